"""``python -m reminder_lightning compare --runs '[runs/eval/none, runs/eval/reminder]'``: compare evaluations.

Reads finished (and judged) evaluation folders, and writes one table with Wilson 95% intervals
(``compare.md``), every count (``compare.json``) and a bar plot (``compare.png``) into ``output_dir``.
"""

from __future__ import annotations


def compare(
    runs: list[str],
    output_dir: str = "runs/compare",
    labels: list[str] | None = None,
    baseline: str | None = None,
    judges: list[str] | None = None,
) -> dict:
    """Compare evaluation runs: ASR, refusals, over-refusal, benign answers unchanged, gate rates.

    Args:
        runs: Evaluation folders written by ``python -m reminder_lightning test`` (their ``model.output_dir``).
        output_dir: Where ``compare.md``, ``compare.json`` and ``compare.png`` are written.
        labels: One unique name per run, in the order of ``runs`` (default: each run's defence and mode).
        baseline: Label of the run that benign answers are compared against (default: the run without a
            defence, else the first).
        judges: Judges to report (default: every judge that judged all runs).
    """
    from reminder_lightning.evaluation.compare import compare_runs
    from reminder_lightning.evaluation.compare_report import compare_table, write_comparison

    result = compare_runs(runs, labels=labels, baseline=baseline, judges=judges)
    paths = write_comparison(result, output_dir)
    print("\n" + compare_table(result))
    for skipped in result["skipped"]:
        print(f"Skipped {skipped['kind']} {skipped['name']}: {skipped['reason']}")
    print(f"\nWritten: {', '.join(str(p) for p in paths)}")
    return result


def main(args: list[str] | None = None):
    from jsonargparse import auto_cli

    return auto_cli(compare, args=args, as_positional=False)
