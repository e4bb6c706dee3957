"""The robustness report: ASR against attack budget per defence and attack (table, JSON, one plot).

Every number is read back from the ``test`` folders through :func:`~reminder_lightning.evaluation.compare.
compare_runs` (counts, Wilson 95% intervals); nothing is recomputed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reminder_lightning.evaluation.compare import compare_runs


def _rate(rate: dict | None) -> dict | None:
    return None if rate is None else {k: rate[k] for k in ("value", "hits", "n", "ci95")}


def collect_points(
    runs: list[dict[str, Any]], clean: dict[str, str], specs: list[dict], baseline: str | None = None
) -> dict[str, Any]:
    """``{"clean": rows per defence and judge, "attacked": one row per (defence, attack, axis, budget, judge)}``;
    attacks that know the defence but could not be fitted against it (no reminder) are listed as not applicable.
    ``baseline``: the defence whose benign answers ``benign_unchanged`` compares against (compare's default)."""
    labels = list(clean)
    clean_rows = []
    for row in compare_runs(list(clean.values()), labels=labels, baseline=baseline)["results"]:
        clean_rows.append(
            {"defence": row["run"], "benchmark": row["benchmark"], "judge": row["judge"], "asr": _rate(row["asr"]),
             "over_refusal": _rate(row["over_refusal"]), "benign_unchanged": _rate(row["benign_unchanged"]),
             "gate_rate_harmful": _rate(row["gate_rate_harmful"]), "gate_rate_benign": _rate(row["gate_rate_benign"])}
        )  # fmt: skip
    attacked = []
    for run in runs:
        for row in compare_runs([run["folder"]], labels=[run["defence"]])["results"]:
            attacked.append(
                {**{k: run[k] for k in ("defence", "attack", "axis", "param", "budget", "folder")},
                 "judge": row["judge"], "asr": _rate(row["asr"]), "gate_rate": _rate(row["gate_rate_harmful"])}
            )  # fmt: skip
    covered = {(r["defence"], r["attack"]) for r in runs}
    not_applicable = [
        {"defence": d, "attack": s["label"], "why": _NOT_APPLICABLE[s.get("knows", "reminder")]}
        for s in specs
        for d in labels
        if s["adaptive"] and (d, s["label"]) not in covered
    ]
    return {"clean": clean_rows, "attacked": attacked, "not_applicable": not_applicable}


_NOT_APPLICABLE = {
    "reminder": "the attack needs the defence's reminder artifact",
    "defence": "the defence has no attack surface for it (none: plain PGD; the reminder: adaptive PGD; ECSO)",
}


def _cell(rate: dict | None) -> str:
    if rate is None:
        return "-"
    lo, hi = rate["ci95"]
    return f"{100 * rate['value']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def robustness_table(report: dict[str, Any]) -> str:
    """Markdown: the clean numbers per defence, then ASR per attack and budget (one column per budget)."""
    points = report["points"]
    base = report.get("baseline")
    unchanged = f"benign unchanged (vs {base})" if base else "benign unchanged"
    lines = ["## Clean prompts", "", f"| defence | benchmark | judge | ASR | over-refusal | {unchanged} | gate rate |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in points["clean"]:
        gate = r["gate_rate_harmful"] or r["gate_rate_benign"]
        lines.append(
            f"| {r['defence']} | {r['benchmark']} | {r['judge']} | {_cell(r['asr'])} | {_cell(r['over_refusal'])} | "
            f"{_cell(r['benign_unchanged'])} | {_cell(gate)} |"
        )
    for spec in report["attacks"]:
        for axis, budget in spec["budgets"].items():
            values = budget["values"]
            lines += ["", f"## {spec['label']}: ASR by {budget['param']} ({axis})", "",
                      "| defence | judge | " + " | ".join(f"{budget['param']} {v}" for v in values) + " |",
                      "|---|---|" + "---|" * len(values)]  # fmt: skip
            rows = [r for r in points["attacked"] if r["attack"] == spec["label"] and r["axis"] == axis]
            for defence, judge in dict.fromkeys((r["defence"], r["judge"]) for r in rows):
                by_value = {r["budget"]: r for r in rows if r["defence"] == defence and r["judge"] == judge}
                cells = []
                for v in values:
                    r = by_value.get(v)
                    cells.append("-" if r is None else f"{_cell(r['asr'])}, gate {_cell(r['gate_rate'])}")
                lines.append(f"| {defence} | {judge} | " + " | ".join(cells) + " |")
    for na in points["not_applicable"]:
        lines.append(f"\n{na['attack']} against {na['defence']}: not applicable ({na['why']}).")
    n = report["n_prompts"]
    fewer = [f"{s['label']} {min(s['max_prompts'], n)}" for s in report["attacks"] if s.get("max_prompts")]
    fewer_text = f" ({', '.join(fewer)})" if fewer else ""
    lines += ["", f"Held-out harmful prompts per attacked point: {report['n_prompts']}{fewer_text}. Intervals are "
              "Wilson 95% (in %). Every attack setting is in robustness.json."]  # fmt: skip
    return "\n".join(lines) + "\n"


def defence_colours(report: dict[str, Any]) -> dict[str, str]:
    """One matplotlib colour per defence, the same in every panel: a panel without some defences (an adaptive
    attack has no point for ``none``) must not shift the others' colours. Order: the report's defences."""
    labels = [d["label"] for d in report.get("defences", [])]
    labels += [r["defence"] for r in report["points"]["attacked"]]
    return {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}


def plot_curves(report: dict[str, Any], path: Path, judge: str | None = None) -> Path:
    """One panel per (attack, budget axis): ASR against budget, one line per defence, the clean ASR dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacked = report["points"]["attacked"]
    judge = judge or (attacked[0]["judge"] if attacked else None)
    panels = [(s, axis, b) for s in report["attacks"] for axis, b in s["budgets"].items()]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.5 * max(1, len(panels)), 3.6), squeeze=False)
    clean = {
        r["defence"]: r["asr"]["value"] for r in report["points"]["clean"] if r["asr"] and r["judge"] == judge
    }
    colour = defence_colours(report)
    for ax, (spec, axis, budget) in zip(axes[0], panels, strict=False):
        rows = [r for r in attacked if r["attack"] == spec["label"] and r["axis"] == axis and r["judge"] == judge]
        for defence in dict.fromkeys(r["defence"] for r in rows):
            mine = sorted((r for r in rows if r["defence"] == defence), key=lambda r: r["budget"])
            x = [r["budget"] for r in mine]
            y = [100 * r["asr"]["value"] for r in mine]
            lo = [100 * r["asr"]["ci95"][0] for r in mine]
            hi = [100 * r["asr"]["ci95"][1] for r in mine]
            ax.plot(x, y, marker="o", label=defence, color=colour[defence])
            ax.fill_between(x, lo, hi, color=colour[defence], alpha=0.12)
            if defence in clean:
                ax.axhline(100 * clean[defence], color=colour[defence], linestyle=":", linewidth=1)
        fewer = f", {min(spec['max_prompts'], report['n_prompts'])} prompts" if spec.get("max_prompts") else ""
        ax.set_title(f"{spec['label']} ({axis}{fewer})")
        ax.set_xlabel(budget["param"])
        ax.set_ylabel(f"ASR % ({judge})")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines() if not h.get_label().startswith("_")}
    axes[0][0].legend(list(handles.values()), list(handles), fontsize=7)  # every defence of every panel, once
    fig.suptitle(f"ASR against attack budget ({report['n_prompts']} held-out prompts per point; dotted: clean)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], output_dir: Path) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    md = output_dir / "robustness.md"
    md.write_text("# Robustness: ASR against attack budget\n\n" + robustness_table(report))
    js = output_dir / "robustness.json"
    js.write_text(json.dumps(report, indent=2, default=str))
    png = plot_curves(report, output_dir / "robustness.png")
    print("\n" + md.read_text() + f"\nWritten: {md}, {js}, {png}")
    return [md, js, png]
