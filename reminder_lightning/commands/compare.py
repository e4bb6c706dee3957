"""``python -m reminder_lightning compare --runs '[runs/eval/none, runs/eval/reminder]'``: compare evaluations.

Reads finished (and judged) evaluation folders, and writes one table with Wilson 95% intervals
(``compare.md``), every count (``compare.json``), a bar plot (``compare.png``) and the ASR / over-refusal trade-off
(``tradeoff.png``) into ``output_dir``.

With ``eval_config`` and ``defences`` (one YAML, one command: ``compare --config configs/compare/<name>.yaml``) it
first answers the config's benchmarks with each defence (``test``, resumable, into ``<output_dir>/runs/<label>``)
and then compares them all.
"""

from __future__ import annotations


def compare(
    runs: list[str] | None = None,
    output_dir: str = "runs/compare",
    labels: list[str] | None = None,
    baseline: str | None = None,
    judges: list[str] | None = None,
    eval_config: str | None = None,
    defences: list[dict] | None = None,
    test_args: list[str] | None = None,
) -> dict:
    """Compare evaluation runs: ASR, refusals, over-refusal, benign answers unchanged, gate rates, latency.

    Args:
        runs: Evaluation folders written by ``python -m reminder_lightning test`` (their ``model.output_dir``).
        output_dir: Where ``compare.md``, ``compare.json`` and ``compare.png`` are written.
        labels: One unique name per run, in the order of ``runs`` (default: each run's defence and mode).
        baseline: Label of the run that benign answers are compared against (default: the run without a
            defence, else the first).
        judges: Judges to report (default: every judge that judged all runs).
        eval_config: A ``test`` config (model, benchmarks, judges, decoding) to answer with every defence in
            ``defences``.
        defences: ``{label, class_path, init_args}`` per defence (``label`` names its run; default: the class name).
        test_args: More ``test`` arguments for every defence's run (e.g. ``["--model.decoding.max_new_tokens", "20"]``).
    """
    from pathlib import Path

    from reminder_lightning.evaluation.compare import compare_runs
    from reminder_lightning.evaluation.compare_report import compare_table, write_comparison

    runs = list(runs or [])
    if defences:
        if eval_config is None:
            raise ValueError("compare: defences need eval_config, the `test` config their answers are made with.")
        if labels is not None and len(labels) != len(runs):
            raise ValueError(f"compare: {len(labels)} labels for {len(runs)} runs; the defences carry their own.")
        made, made_labels = run_defences(eval_config, defences, output_dir, test_args or [])
        labels = [*(labels if labels is not None else [Path(r).name for r in runs]), *made_labels]
        runs += made
    elif eval_config is not None:
        raise ValueError("compare: eval_config without defences has nothing to run; give defences or runs.")
    if not runs:
        raise ValueError("compare: give --runs (evaluation folders) or --eval_config with --defences.")
    result = compare_runs(runs, labels=labels, baseline=baseline, judges=judges)
    paths = write_comparison(result, output_dir)
    print("\n" + compare_table(result))
    for skipped in result["skipped"]:
        print(f"Skipped {skipped['kind']} {skipped['name']}: {skipped['reason']}")
    print(f"\nWritten: {', '.join(str(p) for p in paths)}")
    return result


def run_defences(
    eval_config: str, defences: list[dict], output_dir: str, test_args: list[str] = ()
) -> tuple[list[str], list[str]]:
    """Answer ``eval_config``'s benchmarks once per defence (``test``, resumable); returns (folders, labels)."""
    import json
    from pathlib import Path

    from reminder_lightning.cli import main as cli

    folders, labels = [], []
    for spec in defences:
        if "class_path" not in spec:
            raise ValueError(
                f"compare: defence {spec} has no class_path (e.g. reminder_lightning.defences.none.NoDefence)."
            )
        label = spec.get("label") or spec["class_path"].rsplit(".", 1)[-1]
        if label in labels:
            raise ValueError(f"compare: two defences are labelled {label!r}; give each its own label.")
        folder = Path(output_dir) / "runs" / "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
        defence = {"class_path": spec["class_path"], "init_args": spec.get("init_args") or {}}
        print(f"\n== {label}: test --config {eval_config} -> {folder}")
        cli(
            [
                "test",
                "--config",
                eval_config,
                f"--model.defence={json.dumps(defence)}",
                f"--model.output_dir={folder}",
            ]
        )
        folders.append(str(folder))
        labels.append(label)
    return folders, labels


def main(args: list[str] | None = None):
    from jsonargparse import auto_cli

    return auto_cli(compare, args=args, as_positional=False)
