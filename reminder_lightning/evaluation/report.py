"""The end of an evaluation: a table in the terminal, ``summary.json`` / ``summary.md``, plots, a W&B table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%"


def summary_table(summary: list[dict[str, Any]]) -> str:
    """A Markdown table: benchmark x defence x judge with n, ASR, over-refusal, gate rate, leakage (mean tokens
    before a flag on harmful prompts; flagged after more than 15 tokens / flagged), mean P(safe)."""
    head = (
        "| benchmark | defence | judge | n | ASR | over-refusal | gate rate | tokens before flag (> 15 / flagged) "
        "| P(safe) harmful / benign |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        p_h, p_b = row["mean_p_safe_harmful"], row["mean_p_safe_benign"]
        p_text = (
            "-"
            if math.isnan(p_h) and math.isnan(p_b)
            else (f"{'-' if math.isnan(p_h) else f'{p_h:.2f}'} / {'-' if math.isnan(p_b) else f'{p_b:.2f}'}")
        )
        asr = _pct(row["asr"]) + (f" ({row['undecided']} undecided)" if row.get("undecided") else "")
        lines.append(
            f"| {row['benchmark']} | {row['defence']} | {row['judge']} | {row['n']} | {asr} | "
            f"{_pct(row['over_refusal'])} | {_pct(row['gate_rate'])} | {_leak(row)} | {p_text} |"
        )
    return "\n".join(lines)


def _leak(row: dict[str, Any]) -> str:
    if not row.get("n_flagged_harmful"):
        return "-"
    return f"{row['tokens_before_flag']:.1f} ({row['leaked']} / {row['n_flagged_harmful']})"


def _agree(k: dict[str, Any], field: str) -> str:
    share = k.get(f"agree_{field}")
    return "" if share is None else f", agree {100 * share:.1f}%"


def agreement_lines(summary: list[dict[str, Any]]) -> list[str]:
    """One line per benchmark and pair of judges: kappa on unsafe (harmful answers) and on refusal (all), each
    with the share of answers the two judges agree on."""
    lines, seen = [], set()
    for row in summary:
        for other, k in (row.get("agreement") or {}).items():
            pair = (row["benchmark"], *sorted((row["judge"], other)))
            if pair in seen:
                continue
            seen.add(pair)
            unsafe = "-" if k["unsafe"] is None else f"{k['unsafe']:.3f}{_agree(k, 'unsafe')} (n={k['n_unsafe']})"
            lines.append(
                f"- {row['benchmark']}: {row['judge']} vs {other}: unsafe {unsafe}, refusal "
                f"{k['refusal']:.3f}{_agree(k, 'refusal')} (n={k['n_refusal']})"
            )
    return lines


def write_summary(output_dir: Path, summary: list[dict[str, Any]], run_info: dict[str, Any]) -> tuple[Path, Path]:
    """``summary.json`` (everything) and ``summary.md`` (the table plus the settings that move ASR)."""
    json_path, md_path = output_dir / "summary.json", output_dir / "summary.md"
    json_path.write_text(json.dumps({"run": run_info, "results": summary}, indent=2, default=str))
    settings = "\n".join(f"- **{k}**: `{json.dumps(v, default=str)}`" for k, v in run_info.items())
    per_cat = []
    for row in summary:
        if row["asr_per_category"]:
            cats = ", ".join(f"{k} {_pct(v)}" for k, v in row["asr_per_category"].items())
            per_cat.append(f"- {row['benchmark']} / {row['judge']}: {cats}")
    md = ["# Evaluation summary", "", summary_table(summary), "", "## Settings", "", settings]
    if per_cat:
        md += ["", "## ASR per category", "", *per_cat]
    agreement = agreement_lines(summary)
    if agreement:
        md += ["", "## Judge agreement (Cohen's kappa)", "", *agreement]
    md_path.write_text("\n".join(md) + "\n")
    return json_path, md_path


def save_plots(output_dir: Path, summary: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[Path]:
    """Per-category ASR bars (one figure per benchmark and judge) and P(safe) histograms (harmful vs benign)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir = output_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for row in summary:
        cats = {k: v for k, v in row["asr_per_category"].items() if not math.isnan(v)}
        if not cats:
            continue
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(cats) + 2), 3.5))
        ax.bar(range(len(cats)), [100 * v for v in cats.values()], color="#c0504d")
        ax.set_xticks(range(len(cats)), list(cats), rotation=45, ha="right")
        ax.set_ylabel("ASR (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{row['benchmark']}: {row['defence']}, judge {row['judge']}")
        fig.tight_layout()
        path = plot_dir / f"asr_{_slug(row['benchmark'])}_{_slug(row['judge'])}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    harmful = [p for r in rows if r["harmful"] for _, p in r.get("checks", []) if not math.isnan(p)]
    benign = [p for r in rows if not r["harmful"] for _, p in r.get("checks", []) if not math.isnan(p)]
    if harmful or benign:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        bins = [i / 20 for i in range(21)]
        if harmful:
            ax.hist(harmful, bins=bins, alpha=0.6, label=f"harmful ({len(harmful)} checks)", color="#c0504d")
        if benign:
            ax.hist(benign, bins=bins, alpha=0.6, label=f"benign ({len(benign)} checks)", color="#4f81bd")
        ax.set_xlabel("P(safe) at the reminder")
        ax.set_ylabel("checks")
        ax.legend()
        fig.tight_layout()
        path = plot_dir / "p_safe_hist.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def log_wandb_table(
    logger,
    rows: list[dict[str, Any]],
    verdicts: dict[str, dict[str, dict]],
    limit: int = 64,
    images: dict[str, Any] | None = None,
    key: str = "eval/samples",
) -> bool:
    """A W&B table of the first ``limit`` samples (image, prompt, answer, verdicts); False if no W&B logger."""
    from lightning.pytorch.loggers import WandbLogger

    if not isinstance(logger, WandbLogger):
        return False
    import wandb

    judge_names = sorted(verdicts)
    columns = [
        "benchmark",
        "id",
        "image",
        "prompt",
        "judge_question",
        "answer",
        "flagged",
        "flag_step",
        *[f"unsafe[{j}]" for j in judge_names],
    ]
    data = []
    for row in rows[:limit]:
        image = (images or {}).get(row["key"])
        data.append(
            [
                row["benchmark"],
                row["id"],
                wandb.Image(image) if image is not None else None,
                row["prompt"],
                row["judge_question"],
                row["text"],
                row["flagged"],
                row["flag_step"],
                *[verdicts[j].get(row["key"], {}).get("unsafe") for j in judge_names],
            ]
        )
    logger.log_table(key=key, columns=columns, data=data)
    return True


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
