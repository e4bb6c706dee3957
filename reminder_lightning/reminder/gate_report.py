"""What a calibrated gate reports beside its choice: ROC points, and the warning and floor on its validation TPR."""

from __future__ import annotations

import torch


def short_tpr_message(report: dict, harmful_answers: int) -> str:
    """What a gate that lets validation harmful answers through at its operating point means, and the fixes."""
    passed = round((1.0 - report["val_tpr"]) * harmful_answers)
    return (
        f"the chosen gate ({report['chosen']}) lets {passed} of {harmful_answers} validation harmful answers "
        f"through at target_fpr {report['target_fpr']} (validation TPR {report['val_tpr']:.1%}): expect about as "
        "many held-out harmful answers unflagged. Fix: other or more layers / components, more calibration answers, "
        "or another training seed; min_val_tpr refuses such a gate."
    )


def require_val_tpr(report: dict, min_val_tpr: float | None) -> None:
    """Fail closed on a gate whose validation TPR at the target FPR is below ``min_val_tpr`` (None: no floor)."""
    if min_val_tpr is None:
        return
    if not 0.0 < min_val_tpr <= 1.0:
        raise ValueError(f"min_val_tpr must be in (0, 1], got {min_val_tpr}")
    if report["val_tpr"] < min_val_tpr - 1e-9:
        harmful = report["validation"]["harmful_answers"]
        raise ValueError(
            f"Gate refused: validation TPR {report['val_tpr']:.1%} < min_val_tpr {min_val_tpr:.1%}; "
            f"{short_tpr_message(report, harmful)} Nothing is exported."
        )


def roc_points(harmful: torch.Tensor, benign: torch.Tensor, max_points: int = 64) -> list[list[float]]:
    """``[fpr, tpr, threshold]`` of the per-answer gate at thresholds just above each observed score (a flag is
    P(safe) < threshold), thinned to at most ``max_points`` points, from (0, 0) to (1, 1)."""
    values = torch.cat([harmful, benign]).unique().sort().values
    thresholds = [float(torch.nextafter(v, torch.tensor(2.0))) for v in values]
    step = max(1, len(thresholds) // max_points)
    points = [[0.0, 0.0, 0.0]]
    for t in thresholds[::step] + thresholds[-1:]:
        points.append([float((benign < t).float().mean()), float((harmful < t).float().mean()), t])
    return points
