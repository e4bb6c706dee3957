"""The spread of each rate across runs other than the baseline (e.g. one defence trained with several seeds)."""

from __future__ import annotations

from typing import Any

#: The rates summarised by :func:`across_runs` and plotted: (result field, display name).
PLOT_METRICS = [
    ("asr", "ASR"),
    ("refusal_rate", "refusal (harmful)"),
    ("over_refusal", "over-refusal"),
    ("benign_unchanged", "benign unchanged"),
    ("gate_rate_harmful", "gate rate harmful"),
    ("gate_rate_benign", "gate rate benign"),
]


def across_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean, standard deviation (n - 1) and range of each rate over the runs other than the baseline (e.g. the same
    defence trained with several seeds), per benchmark and judge; empty with fewer than two such runs."""
    others = [r["label"] for r in result["runs"] if r["label"] != result["baseline"]]
    if len(others) < 2:
        return []
    out = []
    for bench in result["benchmarks"]:
        for judge in result["judges"]:
            rows = [
                r
                for r in result["results"]
                if r["benchmark"] == bench and r["judge"] == judge and r["run"] in others
            ]
            for metric, name in PLOT_METRICS:
                values = [r[metric]["value"] for r in rows if r[metric] is not None]
                if len(values) < 2:
                    continue
                mean = sum(values) / len(values)
                sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
                out.append(
                    {
                        "benchmark": bench,
                        "judge": judge,
                        "metric": name,
                        "runs": len(values),
                        "mean": mean,
                        "sd": sd,
                        "min": min(values),
                        "max": max(values),
                    }
                )
    return out
