"""``python -m reminder_lightning judge``: judge saved generations later, or validate judges against labels.

* ``judge --output_dir runs/eval/x --judges+=...`` reads ``generations.jsonl`` of a finished (or interrupted)
  evaluation, runs the given judges (resuming from their ``judgements.<judge>.jsonl``), and rewrites the
  summary, table and plots. Judges can run on another machine or device than the one that generated.
* ``judge --validate pyrit-refusal --output_dir runs/judges`` scores the judges against a labelled set (the
  shipped one, or a file with question, answer, label) and writes ``judge_validation.md`` / ``.json`` and
  ``disagreements.<judge>.jsonl`` (see :mod:`~reminder_lightning.evaluation.judge_validation`).
"""

from __future__ import annotations

from pathlib import Path

from reminder_lightning.evaluation.judges.base import Judge


def judge_saved(
    output_dir: str | None = None,
    judges: list[Judge] | None = None,
    batch_size: int = 16,
    validate: str | None = None,
) -> list[dict]:
    """Judge and score the generations in ``output_dir``, or (with ``validate``) score the judges against labels.

    Args:
        output_dir: An evaluation's results folder (with ``generations.jsonl`` or rank files); with
            ``validate``, where the validation report goes (default: print only).
        judges: Judges to run (default: the refusal-keyword judge).
        batch_size: Answers per judge call.
        validate: A labelled set to score the judges on instead: ``pyrit-refusal`` (shipped, built from the
            installed pyrit package's human-labelled answers) or a .jsonl/.json/.csv with question, answer and
            label (``refusal``/``compliance`` or ``unsafe``/``safe``).
    """
    import json

    from reminder_lightning.evaluation.judging import judge_generations, score
    from reminder_lightning.evaluation.report import save_plots, summary_table, write_summary
    from reminder_lightning.evaluation.store import merge_generations

    if judges is None:
        from reminder_lightning.evaluation.judges.keyword import KeywordJudge

        judges = [KeywordJudge()]
    if validate is not None:
        return validate_judges(validate, judges, output_dir, batch_size)
    if output_dir is None:
        raise ValueError("judge: give --output_dir (an evaluation's results folder) or --validate LABELLED_SET.")
    out = Path(output_dir)
    if not (out / "generations.jsonl").exists() and not list(out.glob("generations.rank*.jsonl")):
        raise FileNotFoundError(f"No generations in {out}: run `python -m reminder_lightning test` first.")
    rows = merge_generations(out)
    verdicts = judge_generations(rows, judges, out, batch_size)
    summary = score(rows, verdicts)
    info_path = out / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info["judges"] = [j.name for j in judges]
    write_summary(out, summary, info)
    save_plots(out, summary, rows)
    print("\n" + summary_table(summary))
    return summary


def validate_judges(spec: str, judges: list[Judge], output_dir: str | None, batch_size: int) -> list[dict]:
    """Score every judge on the labelled set ``spec``; print the table, write the report when asked."""
    from reminder_lightning.evaluation.judge_sets import labelled_rows
    from reminder_lightning.evaluation.judge_validation import validate_judge, validation_table, write_validation

    rows, source = labelled_rows(spec)
    results = [validate_judge(j, rows, batch_size, where=source) for j in judges]
    print(f"\nLabelled set: {source}, {len(rows)} answers\n" + validation_table(results))
    if output_dir is not None:
        print(f"Report: {write_validation(output_dir, results, source)}")
    return results


def main(args: list[str] | None = None):
    from jsonargparse import auto_cli

    return auto_cli(judge_saved, args=args, as_positional=False)
