"""ProbeCalibration: after training, choose the gate where it is applied and hand it to the exported artifact.

Add it to any ``fit`` config::

    trainer:
      callbacks:
        - class_path: reminder_lightning.callbacks.probe_calibration.ProbeCalibration
          init_args:
            validation_harmful: {class_path: reminder_lightning.data.sources.LocalRecords,
                                 init_args: {path: data/val_harmful.jsonl, kind: harmful}}
            validation_benign: {class_path: reminder_lightning.data.sources.LocalRecords,
                                init_args: {path: data/val_benign.jsonl, kind: benign}}
            layers: [16, 22, -1, [16, 22]]  # a list: one candidate reading those layers concatenated
            components: [4, 16, 32]
            target_fpr: 0.01

It runs in ``on_train_end``, which Lightning calls (for every callback and the module) before any ``on_fit_end``,
where the module exports ``reminder.safetensors``: the exported artifact carries the calibrated probe, threshold
and the calibration report (metadata ``gate``) whatever the order of the callbacks. The answers whose prefixes are
read are the records' own answers: ``harmful_answer`` of harmful records (the compliant answer the reminder must
catch) and ``safe_answer`` of benign records (the helpful answer it must leave alone), ideally the model's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from reminder_lightning.data.records import Record, load_image
from reminder_lightning.data.sources import RecordSource, load_sources
from reminder_lightning.reminder.calibration import CheckStates, collect_check_states, flat_layers
from reminder_lightning.reminder.gate_selection import ThresholdRule, calibrate_gate
from reminder_lightning.reminder.injection import ReminderInjector


class ProbeCalibration(L.Callback):
    """Refit the safety probe at the reminder position on answer prefixes at the check points, choose layer, PCA size
    and threshold on validation answers at ``target_fpr``, and install the result in the module before export.

    Args:
        validation_harmful: Harmful records with answers (the choice is made on these and ``validation_benign``).
        validation_benign: Benign records with the model's own helpful answers.
        train_harmful: Harmful records the candidates are fitted on (one source, or a list read in order); default:
            the data module's ``harmful``. More answers than SAPT trains on make a better gate: answers of prompts
            kept for the gate alone can be listed beside the training records.
        train_benign: Benign records the candidates are fitted on (one source or a list); default: the data
            module's ``benign``.
        layers: ``hidden_states`` entries the candidates may read (-1: the last layer); an entry that is a list
            (``[16, 22]``) is a candidate reading those layers concatenated (the multi-layer gate).
        components: PCA sizes of the candidates.
        target_fpr: Share of validation benign *answers* the gate may flag.
        threshold_rule: ``mid_gap`` or ``at_fpr`` (see :mod:`reminder_lightning.reminder.gate_selection`).
        cross_fit_folds: 0: candidates are fitted on the training answers and chosen on the validation answers.
            ``k >= 2``: chosen on out-of-fold scores of the validation answers (each scored by candidates fitted on
            the training answers plus the other ``k - 1`` folds), and the chosen candidate is refitted on training
            and validation answers together: more answers to fit on, the same untouched scores to choose on.
        include_trained_probe: Also consider the probe the module trained with (SAPT's BCE term), as it is.
        max_answer_tokens: The decoding budget (``max_new_tokens``): checks after fewer tokens than this are read.
        max_train_per_class: Use at most this many training records per class (None: all).
        fit_every: Read the *training* answers after every ``fit_every`` tokens (``fit_every - 1``,
            ``2 * fit_every - 1``, ...) instead of only at the schedule's check points: more states to fit the
            candidates on, from the same answers (None: the check points). Validation answers are always read at
            the check points, where generation reads.
        with_images: Give the records' images to the model, as at inference.
        batch_size: Sequences per forward pass.
        report_path: The JSON report; default ``<trainer.default_root_dir>/gate_calibration.json``.
        min_val_tpr: Refuse (raise, export nothing) a chosen gate that flags fewer than this share of the
            validation harmful answers at ``target_fpr`` (None: keep it; a gate short of 100% is always warned about,
            in the log and the report's ``warnings``). The trained vectors stay in the run's checkpoints.
    """

    def __init__(
        self,
        validation_harmful: RecordSource,
        validation_benign: RecordSource,
        train_harmful: RecordSource | list[RecordSource] | None = None,
        train_benign: RecordSource | list[RecordSource] | None = None,
        layers: list[int | list[int]] | None = None,
        components: list[int] | None = None,
        target_fpr: float = 0.01,
        threshold_rule: ThresholdRule = "mid_gap",
        cross_fit_folds: int = 0,
        include_trained_probe: bool = True,
        max_answer_tokens: int = 64,
        max_train_per_class: int | None = None,
        fit_every: int | None = None,
        with_images: bool = True,
        batch_size: int = 16,
        report_path: str | None = None,
        min_val_tpr: float | None = None,
    ):
        if not 0.0 <= target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
        if threshold_rule not in ("at_fpr", "mid_gap"):
            raise ValueError(f"threshold_rule must be 'at_fpr' or 'mid_gap', got {threshold_rule!r}")
        if max_answer_tokens < 2:
            raise ValueError(f"max_answer_tokens must be >= 2, got {max_answer_tokens}")
        self.validation_harmful, self.validation_benign = validation_harmful, validation_benign
        self.train_harmful, self.train_benign = train_harmful, train_benign
        self.layers = list(layers) if layers else [-1]
        flat_layers(self.layers)  # a list that repeats a layer fails here, not after training
        self.components = list(components) if components else [4]
        if fit_every is not None and fit_every < 1:
            raise ValueError(f"fit_every must be None or an integer >= 1, got {fit_every}")
        if cross_fit_folds == 1 or cross_fit_folds < 0:
            raise ValueError(f"cross_fit_folds must be 0 (off) or >= 2, got {cross_fit_folds}")
        self.target_fpr, self.threshold_rule = target_fpr, threshold_rule
        self.cross_fit_folds = cross_fit_folds
        self.include_trained_probe = include_trained_probe
        self.max_answer_tokens, self.max_train_per_class = max_answer_tokens, max_train_per_class
        self.fit_every = fit_every
        self.with_images, self.batch_size = with_images, batch_size
        self.report_path = report_path
        if min_val_tpr is not None and not 0.0 < min_val_tpr <= 1.0:
            raise ValueError(f"min_val_tpr must be None or in (0, 1], got {min_val_tpr}")
        self.min_val_tpr = min_val_tpr
        self.report: dict | None = None

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.calibrate(pl_module, trainer.datamodule)
            path = Path(self.report_path or Path(trainer.default_root_dir) / "gate_calibration.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.report, indent=2))
            rank_zero_info(
                f"Gate calibrated: {self.report['chosen']} (hidden_states {self.report['layer']}, PCA "
                f"{self.report['components']}), threshold {self.report['threshold']:.4g}; validation answers flagged: "
                f"harmful {self.report['val_tpr']:.1%}, benign {self.report['val_fpr']:.1%}. Report: {path}"
            )
            for warning in self.report.get("warnings", []):
                rank_zero_warn(f"Gate calibration: {warning}")
        trainer.strategy.barrier("probe-calibration")

    def calibrate(self, pl_module, datamodule=None) -> dict:
        """Collect states, fit candidates, choose, and ``pl_module.set_gate(...)``; returns the report."""
        train_h = self._records(self.train_harmful, datamodule, "harmful_source", "train_harmful")
        train_b = self._records(self.train_benign, datamodule, "benign_source", "train_benign")
        if self.max_train_per_class is not None:
            train_h, train_b = train_h[: self.max_train_per_class], train_b[: self.max_train_per_class]
        given = {}
        layers = list(self.layers)
        if self.include_trained_probe and pl_module.probe is not None:
            given["trained_probe"] = pl_module.probe.cpu()
            layers.append(pl_module.probe.layer_spec)
        injector = ReminderInjector(pl_module.vlm.input_embeddings(), pl_module.soft_prompt)
        pl_module.injector.detach()  # this injector reads the same soft prompt; one set of hooks at a time
        try:
            states = {
                name: self._states(pl_module, injector, records, flat_layers(layers), name)
                for name, records in (
                    ("train harmful", train_h),
                    ("train benign", train_b),
                    ("validation harmful", self.validation_harmful.load()),
                    ("validation benign", self.validation_benign.load()),
                )
            }
        finally:
            pl_module.injector.attach()
        choice = calibrate_gate(
            states["train harmful"],
            states["train benign"],
            states["validation harmful"],
            states["validation benign"],
            self.layers,
            self.components,
            given,
            self.target_fpr,
            self.threshold_rule,
            self.cross_fit_folds,
            min_val_tpr=self.min_val_tpr,
        )
        self.report = {
            **choice.report,
            "train": {"harmful_answers": len(train_h), "benign_answers": len(train_b)},
            "train_checks": {
                "harmful": len(states["train harmful"].sample),
                "benign": len(states["train benign"].sample),
            },
            "fit_every": self.fit_every,
            "schedule": {
                "interval": pl_module.schedule.interval,
                "max_answer_tokens": self.max_answer_tokens,
                **({"check_at_end": True} if pl_module.schedule.check_at_end else {}),
            },
        }
        pl_module.set_gate(choice.probe, choice.threshold, self.report)
        return self.report

    def _records(self, source, datamodule, attribute: str, name: str) -> list[Record]:
        source = source if source is not None else getattr(datamodule, attribute, None)
        if source is None:
            raise ValueError(
                f"ProbeCalibration: no {name} records: set `{name}`, or use a data module with `{attribute}`."
            )
        return load_sources(source, "ProbeCalibration", name)

    def _states(self, pl_module, injector, records: list[Record], layers: list[int], name: str) -> CheckStates:
        builder = pl_module.vlm.inputs
        answers = []
        for record in records:
            text = record.safe_answer if record.is_safe else record.harmful_answer
            if not text:
                raise ValueError(
                    f"ProbeCalibration: record {record.id!r} ({record.source}) has no "
                    f"{'safe_answer' if record.is_safe else 'harmful_answer'}: the gate is calibrated on answer "
                    "prefixes. Fix: give every record the model's answer."
                )
            answers.append(builder.encode_text(text)[: self.max_answer_tokens])
        images = [load_image(r) if self.with_images and r.image is not None else None for r in records]
        schedule = pl_module.schedule
        if self.fit_every is not None and name.startswith("train"):
            schedule = schedule.replace(interval=self.fit_every, jitter=False)
        return collect_check_states(
            pl_module.vlm,
            [r.question for r in records],
            images,
            answers,
            layers,
            "reminder",
            injector,
            schedule,
            self.batch_size,
            desc=f"gate calibration: {name}",
            max_new_tokens=self.max_answer_tokens,
        )
