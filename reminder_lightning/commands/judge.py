"""``python -m reminder_lightning judge --output_dir runs/eval/x --judges+=...``: judge saved generations later.

Reads ``generations.jsonl`` of a finished (or interrupted) evaluation, runs the given judges (resuming
from their ``judgements.<judge>.jsonl``), and rewrites the summary, table and plots. Judges can run on
another machine or device than the one that generated.
"""

from __future__ import annotations

from pathlib import Path

from reminder_lightning.evaluation.judges.base import Judge


def judge_saved(output_dir: str, judges: list[Judge] | None = None, batch_size: int = 16) -> list[dict]:
    """Judge and score the generations in ``output_dir``.

    Args:
        output_dir: An evaluation's results folder (with ``generations.jsonl`` or rank files).
        judges: Judges to run (default: the refusal-keyword judge).
        batch_size: Answers per judge call.
    """
    import json

    from reminder_lightning.evaluation.judging import judge_generations, score
    from reminder_lightning.evaluation.report import save_plots, summary_table, write_summary
    from reminder_lightning.evaluation.store import merge_generations

    out = Path(output_dir)
    if not (out / "generations.jsonl").exists() and not list(out.glob("generations.rank*.jsonl")):
        raise FileNotFoundError(f"No generations in {out}: run `python -m reminder_lightning test` first.")
    rows = merge_generations(out)
    if judges is None:
        from reminder_lightning.evaluation.judges.keyword import KeywordJudge

        judges = [KeywordJudge()]
    verdicts = judge_generations(rows, judges, out, batch_size)
    summary = score(rows, verdicts)
    info_path = out / "run.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info["judges"] = [j.name for j in judges]
    write_summary(out, summary, info)
    save_plots(out, summary, rows)
    print("\n" + summary_table(summary))
    return summary


def main(args: list[str] | None = None):
    from jsonargparse import auto_cli

    return auto_cli(judge_saved, args=args, as_positional=False)
