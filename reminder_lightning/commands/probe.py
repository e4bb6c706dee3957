"""``python -m reminder_lightning probe --config configs/probe_*.yaml``: fit the safety probe.

Collects last-layer hidden states for harmful and harmless prompts (at the prompt end, as the reference
does, or at the reminder position with a trained soft prompt), fits PCA + logistic regression on a
seeded training split, reports held-out accuracy and ROC AUC, optionally picks the threshold for a target
false-positive rate on benign prompts, and writes the probe (and, given a reminder artifact, a new artifact
that carries it).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from reminder_lightning.data.records import Record, load_image
from reminder_lightning.data.sources import RecordSource
from reminder_lightning.reminder.artifact import load_reminder, save_probe, save_reminder
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.probe_fitting import Position, collect_hidden_states, roc_auc, threshold_for_fpr
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec


def fit_probe(
    vlm: VLMSpec,
    harmful: RecordSource,
    benign: RecordSource,
    output: str = "runs/probe/probe.safetensors",
    position: Position = "prompt_end",
    reminder: str | None = None,
    reminder_output: str | None = None,
    num_components: int = 4,
    layer: int = -1,
    max_per_class: int | None = 256,
    test_fraction: float = 0.25,
    with_images: bool = False,
    target_fpr: float | None = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Fit a safety probe and report how well it separates harmful from harmless prompts.

    Args:
        vlm: The model whose hidden states the probe reads.
        harmful: Harmful prompts (label 0, unsafe).
        benign: Harmless prompts (label 1, safe).
        output: Probe file to write (safetensors, ``probe.*`` tensors); a JSON report goes beside it.
        position: ``prompt_end`` (reference) or ``reminder`` (after the trained soft prompt; needs ``reminder``).
        reminder: A ``reminder.safetensors`` whose soft prompt is injected for ``position: reminder``.
        reminder_output: Write a copy of ``reminder`` that carries the new probe (and threshold) here.
        num_components: Principal components the logistic head reads (reference: 4).
        layer: The ``hidden_states`` entry the probe reads (reference: -1, the last layer; 0 = embeddings).
        max_per_class: Prompts per class, drawn with ``seed`` (reference: 256); None = all.
        test_fraction: Held-out share of each class for the reported accuracy and ROC AUC.
        with_images: Include the records' images (the reference fits on text only).
        target_fpr: If set, choose the threshold that flags at most this share of held-out benign prompts.
        batch_size: Prompts per forward pass.
        seed: Seed of the subsample and the split.
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda[:n]``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    adapter = VLMAdapter.load(vlm, device=dev)
    adapter.requires_grad_(False)
    injector = None
    artifact = None
    if reminder is not None:
        artifact = load_reminder(reminder)
        injector = ReminderInjector(adapter.input_embeddings(), artifact.soft_prompt_module().to(adapter.device))
    rng = random.Random(seed)
    sets = {}
    for name, source, label in (("harmful", harmful, 0), ("benign", benign, 1)):
        records = source.load()
        if max_per_class is not None and len(records) > max_per_class:
            records = rng.sample(records, max_per_class)
        hidden = _states(adapter, records, position, injector, with_images, batch_size, name, layer)
        order = rng.sample(range(len(records)), len(records))
        n_test = max(1, round(len(records) * test_fraction))
        if len(records) - n_test < 1:
            raise ValueError(f"The {name} source gave {len(records)} records: too few to hold out a test split.")
        test_idx, train_idx = order[:n_test], order[n_test:]
        sets[name] = (hidden[train_idx], hidden[test_idx], label)
    train_x = torch.cat([sets["harmful"][0], sets["benign"][0]])
    train_y = torch.cat([torch.zeros(len(sets["harmful"][0])), torch.ones(len(sets["benign"][0]))])
    test_x = torch.cat([sets["harmful"][1], sets["benign"][1]])
    test_y = torch.cat([torch.zeros(len(sets["harmful"][1])), torch.ones(len(sets["benign"][1]))])
    probe = SafetyProbe.fit(train_x, train_y, num_components=num_components, layer=layer)
    p_test = probe(test_x)
    report = {
        "model": vlm.name_or_path,
        "position": position,
        "num_components": probe.num_components,
        "layer": layer,
        "train": {"harmful": len(sets["harmful"][0]), "benign": len(sets["benign"][0])},
        "test": {"harmful": len(sets["harmful"][1]), "benign": len(sets["benign"][1])},
        "train_accuracy": float(((probe(train_x) > 0.5).float() == train_y).float().mean()),
        "test_accuracy": float(((p_test > 0.5).float() == test_y).float().mean()),
        "test_roc_auc": roc_auc(p_test, test_y),
        "seed": seed,
    }
    if target_fpr is not None:
        threshold = threshold_for_fpr(p_test[test_y == 1], target_fpr)
        report["threshold"] = threshold
        report["target_fpr"] = target_fpr
        report["test_fpr"] = float((p_test[test_y == 1] < threshold).float().mean())
        report["test_tpr"] = float((p_test[test_y == 0] < threshold).float().mean())
    out = Path(output)
    meta = {
        k: v for k, v in report.items() if k in ("model", "position", "test_accuracy", "test_roc_auc", "threshold")
    }
    save_probe(out, probe, meta)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    if reminder_output is not None:
        if artifact is None:
            raise ValueError("reminder_output needs reminder: the artifact to copy the probe into.")
        metadata = dict(artifact.metadata)
        metadata.update({"probe_position": position, "probe_test_roc_auc": f"{report['test_roc_auc']:.4f}"})
        if "threshold" in report:
            metadata["threshold"] = str(report["threshold"])
        save_reminder(reminder_output, artifact.soft_prompt, probe, metadata)
        report["reminder_output"] = str(reminder_output)
    _print_report(report, out)
    return report


def _states(
    adapter, records: list[Record], position, injector, with_images, batch_size, name, layer=-1
) -> torch.Tensor:
    images = [load_image(r) if (with_images and r.image is not None) else None for r in records]
    return collect_hidden_states(
        adapter,
        [r.question for r in records],
        images,
        position,
        injector,
        batch_size,
        desc=f"{name} prompts",
        layers=layer,
    )


def _print_report(report: dict, out: Path) -> None:
    rows = [
        ("position", report["position"]),
        ("components", report["num_components"]),
        ("layer (hidden_states index)", report["layer"]),
        ("train (harmful / benign)", f"{report['train']['harmful']} / {report['train']['benign']}"),
        ("test (harmful / benign)", f"{report['test']['harmful']} / {report['test']['benign']}"),
        ("held-out accuracy", f"{report['test_accuracy']:.3f}"),
        ("held-out ROC AUC", f"{report['test_roc_auc']:.3f}"),
    ]
    if "threshold" in report:
        rows += [
            ("threshold", f"{report['threshold']:.4f}"),
            ("held-out FPR / TPR", f"{report['test_fpr']:.3f} / {report['test_tpr']:.3f}"),
        ]
    width = max(len(k) for k, _ in rows)
    print(f"\nSafety probe for {report['model']}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print(f"  written to {out} (report: {out.with_suffix('.json')})")


def main(args: list[str] | None = None) -> dict:
    from jsonargparse import auto_cli

    return auto_cli(fit_probe, args=args, as_positional=False)
