"""Presenting a comparison from :func:`~reminder_lightning.evaluation.compare.compare_runs`: the Markdown
tables (rates as ``value% [low, high]``), the spread across runs, and ``compare.md`` / ``compare.json`` /
``compare.png`` on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reminder_lightning.evaluation.report import agreement_lines
from reminder_lightning.evaluation.spread import PLOT_METRICS, across_runs


def _cell(rate: dict[str, Any] | None) -> str:
    if rate is None:
        return "-"
    lo, hi = rate["ci95"]
    return f"{100 * rate['value']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _latency(row: dict[str, Any]) -> str:
    seconds, ratio = row.get("seconds_per_answer"), row.get("latency_ratio")
    if seconds is None:
        return "-"
    return f"{seconds:.2f}" + ("" if ratio is None else f" ({ratio:.2f}x)")


def compare_table(result: dict[str, Any]) -> str:
    """A Markdown table, one row per (benchmark, judge, run), rates as ``value% [low, high]``."""
    lines = [
        "| benchmark | judge | run | n | ASR | refusal (harmful) | over-refusal | benign unchanged | "
        "gate rate harmful / benign | tokens before flag | flagged after > 15 tokens | s / answer (x baseline) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["results"]:
        asr = _cell(row["asr"]) + (f" ({row['undecided']} undecided)" if row["undecided"] else "")
        gate = f"{_cell(row['gate_rate_harmful'])} / {_cell(row['gate_rate_benign'])}"
        tokens = "-" if row["tokens_before_flag"] is None else f"{row['tokens_before_flag']:.1f}"
        lines.append(
            f"| {row['benchmark']} | {row['judge']} | {row['run']} | {row['n']} | {asr} | "
            f"{_cell(row['refusal_rate'])} | {_cell(row['over_refusal'])} | {_cell(row['benign_unchanged'])} | "
            f"{gate} | {tokens} | {_cell(row.get('leaked_over_15'))} | {_latency(row)} |"
        )
    lines += ["", f"Intervals are Wilson 95% (in %). Baseline: {result['baseline']}."]
    agreement = agreement_lines([{**r, "benchmark": f"{r['benchmark']} / {r['run']}"} for r in result["results"]])
    if agreement:
        lines += ["", "Judge agreement (Cohen's kappa):", "", *agreement]
    spread = result.get("across_runs") or across_runs(result)
    if spread:
        others = len({r["label"] for r in result["runs"]}) - 1
        lines += ["", f"Across the {others} runs other than the baseline:", "", spread_table(spread)]
    return "\n".join(lines)


def spread_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per benchmark x judge x metric, ``mean ± sd [min, max]`` in percent."""
    lines = ["| benchmark | judge | metric | runs | mean ± sd [min, max] |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['judge']} | {r['metric']} | {r['runs']} | {100 * r['mean']:.1f}% ± "
            f"{100 * r['sd']:.1f} [{100 * r['min']:.1f}, {100 * r['max']:.1f}] |"
        )
    return "\n".join(lines)


def _plot(result: dict[str, Any], path: Path) -> None:
    """One panel per benchmark (and judge), grouped bars per run, Wilson error bars, in %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(b, j) for b in result["benchmarks"] for j in result["judges"]]
    labels = [r["label"] for r in result["runs"]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), squeeze=False)
    for ax, (bench, judge) in zip(axes[:, 0], panels, strict=True):
        rows = {r["run"]: r for r in result["results"] if r["benchmark"] == bench and r["judge"] == judge}
        metrics = [(m, name) for m, name in PLOT_METRICS if any(rows[lab][m] is not None for lab in labels)]
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            xs, values, errs = [], [], [[], []]
            for j, (metric, _) in enumerate(metrics):
                rate = rows[label][metric]
                if rate is not None:
                    xs.append(j + (i - (len(labels) - 1) / 2) * width)
                    values.append(100 * rate["value"])
                    errs[0].append(100 * (rate["value"] - rate["ci95"][0]))
                    errs[1].append(100 * (rate["ci95"][1] - rate["value"]))
            ax.bar(xs, values, width, yerr=errs, capsize=3, label=label)
        ax.set_xticks(range(len(metrics)), [name for _, name in metrics], rotation=15)
        ax.set_ylim(0, 105)
        ax.set_ylabel("%")
        ax.set_title(f"{bench} (judge {judge})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tradeoff_points(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per judge, run and harmful benchmark: ASR on that benchmark against the run's over-refusal pooled over every
    benign answer it gave (None where the run answered no benign prompt)."""
    points = []
    for judge in result["judges"]:
        for run in (r["label"] for r in result["runs"]):
            rows = [r for r in result["results"] if r["judge"] == judge and r["run"] == run]
            benign = [r["over_refusal"] for r in rows if r["over_refusal"] is not None]
            hits, n = sum(b["hits"] for b in benign), sum(b["n"] for b in benign)
            for r in rows:
                if r["asr"] is not None:
                    points.append({"judge": judge, "run": run, "benchmark": r["benchmark"], "asr": r["asr"]["value"],
                                   "over_refusal": hits / n if n else None})  # fmt: skip
    return points


def _plot_tradeoff(result: dict[str, Any], path: Path) -> bool:
    """ASR (y) against over-refusal (x), one marker per run, one point per harmful benchmark, one panel per judge;
    False (nothing written) when no run answered benign prompts."""
    points = [p for p in tradeoff_points(result) if p["over_refusal"] is not None]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judges = result["judges"]
    fig, axes = plt.subplots(1, len(judges), figsize=(5.5 * len(judges), 4.5), squeeze=False)
    markers = "osD^v<>pXh*"
    for ax, judge in zip(axes[0], judges, strict=True):
        for i, run in enumerate(r["label"] for r in result["runs"]):
            mine = [p for p in points if p["judge"] == judge and p["run"] == run]
            if mine:
                ax.scatter([100 * p["over_refusal"] for p in mine], [100 * p["asr"] for p in mine], s=60,
                           marker=markers[i % len(markers)], label=run)  # fmt: skip
        ax.set_xlabel("over-refusal on benign prompts (%)")
        ax.set_ylabel("ASR on harmful prompts (%)")
        ax.set_xlim(-2, 102)
        ax.set_ylim(-2, 102)
        ax.set_title(f"judge {judge}: lower left is better")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_comparison(result: dict[str, Any], output_dir: Path | str) -> list[Path]:
    """Write ``compare.md``, ``compare.json``, ``compare.png`` (bars) and, where benign prompts were answered,
    ``tradeoff.png`` (ASR against over-refusal per run) into ``output_dir``; returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path, png_path = out / "compare.md", out / "compare.json", out / "compare.png"
    runs = [
        f"- **{r['label']}**{' (baseline)' if r['baseline'] else ''}: `{r['folder']}`; model `{r['model']}`; "
        f"decoding `{json.dumps(r['decoding'])}`; defence `{json.dumps(r['defence'])}`"
        for r in result["runs"]
    ]
    md = ["# Comparison of evaluation runs", "", compare_table(result), "", "## Runs", "", *runs]
    if result["skipped"]:
        md += ["", "## Skipped", "", *(f"- {s['kind']} {s['name']}: {s['reason']}" for s in result["skipped"])]
    md_path.write_text("\n".join(md) + "\n")
    json_path.write_text(json.dumps(result, indent=2, allow_nan=False, default=str))
    _plot(result, png_path)
    written = [md_path, json_path, png_path]
    if _plot_tradeoff(result, out / "tradeoff.png"):
        written.append(out / "tradeoff.png")
    return written
