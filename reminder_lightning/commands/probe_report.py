"""The ``probe`` command's report: what it writes beside the probe (JSON) and prints."""

from __future__ import annotations

from pathlib import Path

import torch

from reminder_lightning.reminder.calibration import sample_scores
from reminder_lightning.reminder.probe_fitting import roc_auc


def scored(probe, harmful, benign) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-answer P(safe) and labels (1 = benign) for ROC AUC."""
    s_h, s_b = sample_scores(probe, harmful), sample_scores(probe, benign)
    return torch.cat([s_h, s_b]), torch.cat([torch.zeros(len(s_h)), torch.ones(len(s_b))])


def probe_report(vlm, position, answers, probe, name, s, calibration, seed) -> dict:
    train_x, train_y = scored(probe, s["train_harmful"], s["train_benign"])
    test_x, test_y = scored(probe, s["val_harmful"], s["val_benign"])
    report = {
        "model": vlm.name_or_path,
        "position": position,
        "answers": answers,
        "chosen": name,
        "num_components": probe.num_components,
        "layer": probe.layer_spec,
        "train": {"harmful": s["train_harmful"].num_samples, "benign": s["train_benign"].num_samples},
        "train_checks": {"harmful": len(s["train_harmful"].sample), "benign": len(s["train_benign"].sample)},
        "test": {"harmful": s["val_harmful"].num_samples, "benign": s["val_benign"].num_samples},
        "train_accuracy": float(((train_x > 0.5).float() == train_y).float().mean()),
        "test_accuracy": float(((test_x > 0.5).float() == test_y).float().mean()),
        "test_roc_auc": roc_auc(test_x, test_y),
        "seed": seed,
    }
    if calibration is not None:
        report.update(
            threshold=calibration["threshold"],
            target_fpr=calibration["target_fpr"],
            threshold_rule=calibration["threshold_rule"],
            test_fpr=calibration["val_fpr"],
            test_tpr=calibration["val_tpr"],
            calibration=calibration,
        )
    return report


def print_report(report: dict, out: Path) -> None:
    rows = [
        ("position", report["position"] + (" (answer check points)" if report["answers"] else "")),
        ("chosen", report["chosen"]),
        ("components", report["num_components"]),
        ("layer (hidden_states index)", report["layer"]),
        ("train answers (harmful / benign)", f"{report['train']['harmful']} / {report['train']['benign']}"),
        ("validation answers (harmful / benign)", f"{report['test']['harmful']} / {report['test']['benign']}"),
        ("validation accuracy", f"{report['test_accuracy']:.3f}"),
        ("validation ROC AUC", f"{report['test_roc_auc']:.3f}"),
    ]
    if "threshold" in report:
        rows += [
            (f"threshold ({report['threshold_rule']})", f"{report['threshold']:.4g}"),
            ("validation FPR / TPR", f"{report['test_fpr']:.3f} / {report['test_tpr']:.3f}"),
        ]
    width = max(len(k) for k, _ in rows)
    print(f"\nSafety probe for {report['model']}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print(f"  written to {out} (report: {out.with_suffix('.json')})")
    for warning in (report.get("calibration") or {}).get("warnings", []):
        print(f"  warning: {warning}")


def share(flags: torch.Tensor) -> float | None:
    """The share of True flags (None when there are none to count)."""
    return float(flags.float().mean()) if len(flags) else None
