"""``python -m reminder_lightning probe --config configs/probe_*.yaml``: fit (and calibrate) the safety probe.

Two uses:

* **The reference's probe** (``position: prompt_end``): hidden states at the last prompt token of harmful and
  harmless prompts, PCA + logistic regression; SAPT's BCE term uses it.
* **Gate calibration** (``position: reminder``, ``answers: true``, a trained ``reminder``): states at the last
  reminder token after the first 15, 31, 47, ... tokens of the records' answers (where generation checks), one
  candidate probe per ``layers`` x ``components``, the one that flags most validation harmful answers at
  ``target_fpr`` of validation benign answers chosen, its threshold placed by ``threshold_rule``; written into a copy
  of the reminder artifact (``reminder_output``) with the calibration report as metadata. The same calibration runs
  after training with the :class:`~reminder_lightning.callbacks.probe_calibration.ProbeCalibration` callback.

Validation records (``validation_harmful`` / ``validation_benign``) are what the choice is made and reported on;
without them a seeded ``test_fraction`` of each class is held out instead.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import torch

from reminder_lightning.commands.probe_report import print_report, probe_report, scored, share
from reminder_lightning.data.records import Record, attacked_copies, load_image, suffixed_copies
from reminder_lightning.data.sources import RecordSource, load_sources
from reminder_lightning.reminder.artifact import file_sha256, load_reminder, save_probe, save_reminder
from reminder_lightning.reminder.calibration import (
    CheckStates,
    collect_check_states,
    fit_candidates,
    flat_layers,
    sample_scores,
)
from reminder_lightning.reminder.gate_selection import ThresholdRule, calibrate_gate
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.probe_fitting import Position, roc_auc
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.reminder.state_cache import StateCache, image_fingerprint
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec


def fit_probe(
    vlm: VLMSpec,
    harmful: RecordSource | list[RecordSource],
    benign: RecordSource | list[RecordSource],
    output: str = "runs/probe/probe.safetensors",
    position: Position = "prompt_end",
    reminder: str | None = None,
    reminder_output: str | None = None,
    layers: list[int | list[int]] | None = None,
    components: list[int] | None = None,
    answers: bool = False,
    interval: int | None = None,
    jitter: bool | None = None,
    check_at_end: bool | None = None,
    max_new_tokens: int = 64,
    validation_harmful: RecordSource | None = None,
    validation_benign: RecordSource | None = None,
    max_per_class: int | None = 256,
    test_fraction: float = 0.25,
    with_images: bool = False,
    target_fpr: float | None = None,
    threshold_rule: ThresholdRule = "at_fpr",
    cross_fit_folds: int = 0,
    fit_every: int | None = None,
    adversarial_images: list[str] | None = None,
    adversarial_suffixes: list[list[str]] | None = None,
    min_val_tpr: float | None = None,
    states_cache: str | None = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Fit a safety probe (choosing among candidate layers and PCA sizes on validation) and report how well it
    separates harmful from harmless answers.

    Args:
        vlm: The model whose hidden states the probe reads.
        harmful: Harmful records (label 0, unsafe): a source or a list; with ``answers``, ``harmful_answer`` is read.
        benign: Harmless records (label 1, safe): a source or a list; with ``answers``, ``safe_answer`` is read.
        output: Probe file to write (safetensors, ``probe.*`` tensors); a JSON report goes beside it.
        position: ``prompt_end`` (the reference) or ``reminder`` (after the trained soft prompt; needs ``reminder``).
        reminder: A ``reminder.safetensors`` whose soft prompt is injected for ``position: reminder``.
        reminder_output: Write a copy of ``reminder`` that carries the chosen probe, threshold and report here.
        layers: Candidate ``hidden_states`` entries (reference: [-1], the last layer; 0 = the embeddings); an entry
            that is a list (``[16, 22]``) is one candidate reading those layers concatenated (the multi-layer gate).
        components: Candidate PCA sizes of the logistic head (reference: [4]).
        answers: Read at the reminder after the first ``c`` answer tokens for every check point ``c`` (the gate's
            real position) instead of right after the prompt; needs ``position: reminder``.
        interval: Check interval for ``answers``; default: the reminder artifact's schedule.
        jitter: Randomised check positions for ``answers`` (validation answers read where a jittered check of
            each would fall; the written reminder checks so); default: the artifact's.
        check_at_end: Also read where answers end before ``max_new_tokens`` (as generation does); the artifact's.
        max_new_tokens: Decoding budget for ``answers``: checks after fewer tokens than this are read.
        validation_harmful: Harmful validation records the choice and the report use (else a held-out share).
        validation_benign: Benign validation records (same).
        max_per_class: Records per class, drawn with ``seed`` (reference: 256); None = all.
        test_fraction: Held-out share of each class when no validation records are given.
        with_images: Include the records' images (the reference fits on text only).
        target_fpr: Choose the threshold (and the candidate) for at most this share of benign validation answers
            flagged; None: keep the artifact's threshold and choose by ROC AUC.
        threshold_rule: ``at_fpr`` (the largest threshold within ``target_fpr``) or ``mid_gap`` (same validation
            flags, threshold mid-way in log-odds between the classes).
        cross_fit_folds: With ``target_fpr``: 0 fits the candidates on the training records and chooses on the
            validation ones; ``k >= 2`` chooses on out-of-fold validation scores (each validation answer scored by
            candidates fitted on the training records plus the other folds) and refits the chosen candidate on
            training and validation records together.
        fit_every: With ``answers``: read the *training* answers after every ``fit_every`` tokens instead of only
            at the check points (more states to fit the candidates on); validation answers stay at the check points.
        adversarial_images: Adversarial calibration: every harmful training and validation record is read again
            with each of these images (e.g. universal images an adaptive attack made against this gate) and counts
            as harmful, so the gate is fitted and chosen to flag attacked answers too; the report gives the
            validation TPR on clean and on attacked answers apart. Needs ``answers`` and ``target_fpr``.
        adversarial_suffixes: Adversarial calibration against text: groups of suffixes (one group per run of a
            suffix attack such as adaptive GCG, a suffix per goal); every harmful training and validation record is
            read again once per group, its question followed by one of the group's suffixes in turn, and counts as
            harmful. Needs ``answers`` and ``target_fpr``; combines with ``adversarial_images``.
        min_val_tpr: With ``target_fpr``: refuse (raise, write nothing) a chosen gate that flags fewer than this
            share of the validation harmful answers (None: keep it; a gate short of 100% is warned about, in the
            printed report and the JSON's ``calibration.warnings``).
        states_cache: A folder where the check states of each part (the clean records; the records under one
            adversarial image or suffix group) are stored, keyed by what they depend on (model, reminder file,
            records, images, answers, where they are read): a later call reading the same part loads it instead of
            running the model (``harden`` sets it, so a round reads only its own new inputs). None: no cache.
        batch_size: Sequences per forward pass.
        seed: Seed of the subsample and the split.
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda[:n]``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if answers and position != "reminder":
        raise ValueError("answers=true reads at the reminder inside the answer: set position=reminder.")
    if not answers and (jitter is not None or interval is not None or check_at_end is not None):
        raise ValueError("interval, jitter and check_at_end place checks inside answers: set answers=true.")
    if fit_every is not None and (not answers or fit_every < 1):
        raise ValueError(
            f"fit_every (got {fit_every}) reads answers every fit_every >= 1 tokens: set answers=true."
        )
    if (adversarial_images or adversarial_suffixes) and (not answers or target_fpr is None):
        raise ValueError(
            "adversarial_images and adversarial_suffixes calibrate the gate inside answers: set answers=true and "
            "target_fpr."
        )
    if min_val_tpr is not None and target_fpr is None:
        raise ValueError("min_val_tpr is a floor at an operating point: set target_fpr too.")
    if (validation_harmful is None) != (validation_benign is None):
        raise ValueError("Give both validation_harmful and validation_benign, or neither.")
    layers, components = list(layers or [-1]), list(components or [4])
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    adapter = VLMAdapter.load(vlm, device=dev)
    adapter.requires_grad_(False)
    injector, artifact = None, None
    if reminder is not None:
        artifact = load_reminder(reminder)
        injector = ReminderInjector(adapter.input_embeddings(), artifact.soft_prompt_module().to(adapter.device))
    schedule = None
    if answers:
        base = artifact.schedule if artifact is not None else ReminderSchedule()
        given = {"interval": interval, "jitter": jitter, "check_at_end": check_at_end}
        schedule = base.replace(**{k: v for k, v in given.items() if v is not None})
    rng = random.Random(seed)
    sets: dict[str, list[Record]] = {}
    for name, source in (("harmful", harmful), ("benign", benign)):
        records = load_sources(source, "probe", name)
        if max_per_class is not None and len(records) > max_per_class:
            records = rng.sample(records, max_per_class)
        if validation_harmful is None:
            order = rng.sample(range(len(records)), len(records))
            n_test = max(1, round(len(records) * test_fraction))
            if len(records) - n_test < 1:
                raise ValueError(
                    f"The {name} source gave {len(records)} records: too few to hold out a test split."
                )
            sets[f"val_{name}"] = [records[i] for i in order[:n_test]]
            records = [records[i] for i in order[n_test:]]
        sets[f"train_{name}"] = records
    if validation_harmful is not None:
        sets["val_harmful"], sets["val_benign"] = validation_harmful.load(), validation_benign.load()
    clean_val_harmful = len(sets["val_harmful"])
    clean_sizes = {}
    for name in ("train_harmful", "val_harmful"):  # adversarial calibration: attacked copies count as harmful
        clean = sets[name]
        clean_sizes[name] = len(clean)
        sets[name] = (
            clean
            + attacked_copies(clean, adversarial_images or [])
            + suffixed_copies(clean, adversarial_suffixes or [])
        )

    cache = StateCache(states_cache) if states_cache else None
    seen: dict[str, str] = {}  # image path -> content hash

    def states(name: str, records: list[Record]):
        read_at = (
            schedule.replace(interval=fit_every, jitter=False)
            if fit_every and name.startswith("train")
            else schedule
        )

        def compute():
            ids = [adapter.inputs.encode_text(_answer(r)) for r in records] if answers else None
            images = [load_image(r) if (with_images and r.image is not None) else None for r in records]
            return collect_check_states(
                adapter, [r.question for r in records], images, ids, flat_layers(layers), position, injector,
                read_at, batch_size, desc=f"{name.replace('_', ' ')} states",
                max_new_tokens=max_new_tokens if answers else None,
            )  # fmt: skip

        if cache is None:
            return compute()
        description = {
            "model": asdict(vlm), "reminder": file_sha256(reminder) if reminder else None, "position": position,
            "layers": flat_layers(layers), "read_at": read_at.to_metadata() if read_at else None,
            "max_new_tokens": max_new_tokens if answers else None,
            "records": [[r.question, image_fingerprint(r.image, seen) if with_images else None,
                         _answer(r) if answers else None] for r in records],
        }  # fmt: skip
        return cache.get(description, compute)

    def parts(name: str) -> list[list[Record]]:
        """The clean records, then one part per adversarial input (what a later harden round reads again)."""
        size = clean_sizes.get(name, len(sets[name])) or 1
        return [sets[name][i : i + size] for i in range(0, len(sets[name]), size)] or [[]]

    s = {name: CheckStates.concat([states(name, part) for part in parts(name)]) for name in sets}
    if cache is not None:
        print(f"check states: {cache.hits} parts read from {states_cache}, {cache.misses} computed")
    if cross_fit_folds and target_fpr is None:
        raise ValueError("cross_fit_folds chooses the gate at an operating point: set target_fpr too.")
    if target_fpr is not None:
        choice = calibrate_gate(
            s["train_harmful"], s["train_benign"], s["val_harmful"], s["val_benign"], layers, components, None,
            target_fpr, threshold_rule, cross_fit_folds, seed, min_val_tpr,
        )  # fmt: skip
        name, probe, calibration = choice.name, choice.probe, choice.report
        calibration["fit_every"] = fit_every
        if adversarial_images or adversarial_suffixes:
            flagged = sample_scores(probe, s["val_harmful"]) < choice.threshold
            by_images = clean_val_harmful * (1 + len(adversarial_images or []))
            calibration["adversarial"] = {
                "images": [str(p) for p in adversarial_images or []],
                "suffixes": [list(group) for group in adversarial_suffixes or []],
                "val_tpr_clean": share(flagged[:clean_val_harmful]),
                "val_tpr_attacked": share(flagged[clean_val_harmful:]),
                "val_tpr_images": share(flagged[clean_val_harmful:by_images]),
                "val_tpr_suffixes": share(flagged[by_images:]),
            }
    else:
        candidates = fit_candidates(
            s["train_harmful"], s["train_benign"], layers, components
        )  # no operating point asked for: the candidate that ranks validation answers best
        aucs = {
            n: roc_auc(*scored(p, s["val_harmful"], s["val_benign"])) for n, p in candidates.items()
        }  # fmt: skip
        name = max(aucs, key=aucs.get)
        probe, calibration = candidates[name], None
    report = probe_report(vlm, position, answers, probe, name, s, calibration, seed)
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
        if calibration is not None:
            checks = schedule if schedule is not None else artifact.schedule
            metadata.update(checks.replace(threshold=report["threshold"], mode="gated").to_metadata())
            metadata["gate"] = json.dumps(calibration)
        save_reminder(reminder_output, artifact.soft_prompt, probe, metadata)
        report["reminder_output"] = str(reminder_output)
    print_report(report, out)
    return report


def _answer(record: Record) -> str:
    text = record.safe_answer if record.is_safe else record.harmful_answer
    if not text:
        raise ValueError(
            f"Record {record.id!r} ({record.source}) has no {'safe_answer' if record.is_safe else 'harmful_answer'}; "
            "answers=true reads the reminder inside the answer. Fix: give every record its answer."
        )
    return text


def main(args: list[str] | None = None) -> dict:
    from jsonargparse import auto_cli

    return auto_cli(fit_probe, args=args, as_positional=False)
