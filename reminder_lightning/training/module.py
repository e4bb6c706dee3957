"""SafetyReminderModule: SAPT on a frozen VLM; only the soft prompt trains.

The VLM is built in :meth:`configure_model` (so FSDP / DeepSpeed can shard it), frozen and kept in
eval mode. Checkpoints hold only the soft prompt and the probe (plus optimizer state), so a 7B run's
checkpoint is kilobytes. At the end of ``fit`` the reminder is exported as one ``reminder.safetensors``
in the run directory.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info

from reminder_lightning.reminder.artifact import load_probe, save_reminder
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.schedule import GateMode, ReminderSchedule
from reminder_lightning.reminder.soft_prompt import DEFAULT_INIT_TEXT, InitKind, SoftPrompt
from reminder_lightning.training.lr_schedule import LRSchedule, build_scheduler
from reminder_lightning.training.objectives import Objective, SaptObjective
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec

_TRAINED_PREFIXES = ("soft_prompt.", "probe.")


def reference_adamw(params) -> torch.optim.Optimizer:
    """The reference optimiser: AdamW, lr 1e-4, betas (0.9, 0.999), weight decay 0.01."""
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01)


class SafetyReminderModule(L.LightningModule):
    """Trains a Safety Reminder (soft prompt) on a frozen VLM with the SAPT objective.

    Args:
        vlm: Which VLM to load and how (hub id / path / ``tiny:<family>``, dtype, attention).
        num_tokens: Number of reminder vectors (reference: 4).
        init: Soft prompt initialisation: ``text`` (embeddings of ``init_text``), ``vocab`` or ``random``.
        init_text: Text whose token embeddings initialise the reminder.
        init_seed: Seed for ``vocab`` / ``random`` initialisation.
        probe_path: Safetensors file with a fitted safety probe (``probe.*`` tensors, or a reminder
            artifact). With a probe the loss adds ``cls_weight`` x BCE(P(safe) at the last reminder
            token, is_safe); without one it is the LM loss alone.
        cls_weight: Weight (lambda) of the probe's BCE term (reference: 0.05).
        train_probe: Train the probe's logistic head together with the reminder (the reference keeps the probe
            frozen): the BCE term then also moves the gate, so the reminder is trained to be separable *for* a
            probe that follows it. Give the probe the layer the gate will read (``probe --layers``). The
            exported artifact carries the trained head unless a calibration callback replaces the gate.
        schedule: When the reminder is tried and kept at inference (interval, threshold, gate mode; reference:
            16, 0.2, gated), stored in the exported artifact. The CLI links it into the data module, whose
            ``sapt.cut: check_points`` cuts prefixes at the same check points.
        optimizer: Optimiser for the soft prompt (default: the reference AdamW).
        lr_schedule: ``constant`` (the reference), ``cosine`` or ``linear``: warm-up over ``warmup_fraction`` of the
            steps, then down to near 0 at the last step (the total is the trainer's own step count). A decaying rate ends
            every training seed at a settled point rather than wherever the optimiser's noise left it.
        warmup_fraction: Share of the steps spent warming up (schedules other than ``constant``).
        gradient_checkpointing: Recompute the frozen model's activations in backward (saves memory on 7B).
        export_path: Where to write ``reminder.safetensors`` at the end of fit; default: the run directory.
        overwrite_export: Replace an existing file at the export path. Off by default: a fit that would overwrite
            an earlier reminder stops before training, naming the file.
        objective: What is optimised and written (default :class:`SaptObjective`); a baseline such as
            prompt tuning plugs in here (``class_path`` in the config) and reuses everything else.
    """

    def __init__(
        self,
        vlm: VLMSpec,
        num_tokens: int = 4,
        init: InitKind = "text",
        init_text: str = DEFAULT_INIT_TEXT,
        init_seed: int = 0,
        probe_path: str | None = None,
        cls_weight: float = 0.05,
        train_probe: bool = False,
        schedule: ReminderSchedule | None = None,
        optimizer: OptimizerCallable = reference_adamw,
        lr_schedule: LRSchedule = LRSchedule.constant,
        warmup_fraction: float = 0.0,
        gradient_checkpointing: bool = False,
        export_path: str | None = None,
        overwrite_export: bool = False,
        objective: Objective | None = None,
    ):
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        if cls_weight < 0:
            raise ValueError(f"cls_weight must be >= 0, got {cls_weight}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if train_probe and (not probe_path or cls_weight == 0):
            raise ValueError(
                "train_probe trains the probe of SAPT's BCE term, but "
                + ("no model.probe_path is set" if not probe_path else "model.cls_weight is 0")
                + ": set model.probe_path to a fitted probe and cls_weight > 0, or train_probe false."
            )
        self.schedule = (
            schedule if isinstance(schedule, ReminderSchedule) else ReminderSchedule(**(schedule or {}))
        )
        self.objective = objective if objective is not None else SaptObjective()
        self.save_hyperparameters(ignore=["optimizer", "objective"])
        self.vlm_spec = vlm if isinstance(vlm, VLMSpec) else VLMSpec(**vlm)
        self.optimizer_factory = optimizer
        self.strict_loading = False
        self.vlm: VLMAdapter | None = None
        self.soft_prompt: SoftPrompt | None = None
        self.probe: SafetyProbe | None = None
        self.injector: ReminderInjector | None = None
        self.exported_path: Path | None = None
        self.gate_report: dict[str, Any] | None = None

    # ------------------------------------------------------------------ building
    def configure_model(self) -> None:
        if self.vlm is not None:
            return
        hp = self.hparams
        vlm = VLMAdapter.load(self.vlm_spec)
        vlm.requires_grad_(False)
        vlm.eval()
        if hp.gradient_checkpointing:
            vlm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.vlm = vlm
        self.soft_prompt = SoftPrompt(hp.num_tokens, vlm.hidden_size).to(vlm.device)
        self.soft_prompt.initialize(hp.init, vlm.input_embeddings(), vlm.tokenizer, hp.init_text, hp.init_seed)
        if hp.probe_path:
            probe = load_probe(hp.probe_path)
            if probe.hidden_size != vlm.hidden_size:
                raise ValueError(
                    f"Probe {hp.probe_path} reads hidden size {probe.hidden_size} but {self.vlm_spec.name_or_path} has "
                    f"{vlm.hidden_size}: it was fitted on another model. Refit it for this model."
                )
            self.probe = (probe.train_head() if hp.train_probe else probe).to(vlm.device)
        self.injector = ReminderInjector(vlm.input_embeddings(), self.soft_prompt).attach()
        self.objective.setup(self)

    def train(self, mode: bool = True):
        """Lightning switches modules to train mode; the frozen VLM stays in eval (no dropout)."""
        super().train(mode)
        if self.vlm is not None:
            self.vlm.eval()
        return self

    def configure_optimizers(self):
        params = list(self.soft_prompt.parameters())
        if self.hparams.train_probe:
            params += [p for p in self.probe.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if LRSchedule(self.hparams.lr_schedule) is LRSchedule.constant:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, self.hparams.lr_schedule, total, self.hparams.warmup_fraction)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        target = self._export_target()  # on every rank: trainer.log_dir is a collective call under DDP
        if target.exists() and not self.hparams.overwrite_export:
            raise FileExistsError(
                f"{target} exists: this fit would overwrite that reminder when it ends. Fix: set "
                "--model.export_path to a new file, or --model.overwrite_export true to replace it."
            )
        self.objective.on_fit_start(self)
        # The frozen VLM is in eval mode on purpose (see train()); Lightning's warning about it names no fix.
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode", category=UserWarning)
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        rank_zero_info(f"{self.objective.name}: {trainable:,} trainable parameters, {frozen:,} frozen.")
        for logger in self.loggers:
            logger.log_hyperparams({"params/trainable": trainable, "params/frozen": frozen})

    # ------------------------------------------------------------------ steps
    def sapt_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The objective's loss terms for one batch (SAPT by default: LM loss + probe BCE)."""
        return self.objective.losses(self, batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.sapt_losses(batch)
        bs = batch["labels"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=bs, prog_bar=name == "loss", sync_dist=False)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs, sync_dist=False)
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        losses = self.sapt_losses(batch)
        bs = batch["labels"].shape[0]
        for name, value in losses.items():
            self.log(f"val/{name}", value, batch_size=bs, prog_bar=name == "loss", sync_dist=True)

    # ------------------------------------------------------------------ checkpoints and export
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only the trained tensors: the frozen VLM is rebuilt from its hub id on load."""
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if k.startswith(_TRAINED_PREFIXES)
        }

    def on_fit_end(self) -> None:
        target = self._export_target()  # on every rank: trainer.log_dir is a collective call under DDP
        if self.trainer.global_step == 0:
            raise RuntimeError(
                f"No optimisation step ran (0 training batches: check data.init_args.num_examples and the data "
                f"files), so no reminder was trained; nothing is written to {target}."
            )
        if self.trainer.is_global_zero:
            self.exported_path = self.objective.export(self, target)
            rank_zero_info(f"{self.objective.name}: written to {self.exported_path}")

    def _export_target(self) -> Path:
        if self.hparams.export_path:
            return Path(self.hparams.export_path)
        run_dir = self.trainer.log_dir or self.trainer.default_root_dir
        return Path(run_dir) / self.objective.default_export_name

    def set_gate(self, probe: SafetyProbe, threshold: float, report: dict[str, Any]) -> None:
        """Install a calibrated gate (see :class:`~reminder_lightning.callbacks.probe_calibration.ProbeCalibration`):
        the exported artifact carries this probe, its threshold (mode ``gated``) and ``report`` as metadata."""
        self.probe = probe.to(self.device)
        self.schedule = self.schedule.replace(threshold=threshold, mode=GateMode.gated)
        self.gate_report = report

    def export(self, path: str | Path) -> Path:
        """Write soft prompt, probe and metadata to one safetensors file."""
        hp = self.hparams
        metadata = {
            "base_model": self.vlm_spec.name_or_path,
            "family": self.vlm.family.name,
            "model_type": self.vlm.inputs.config.model_type,
            "init": hp.init,
            "init_text": hp.init_text,
            **self.schedule.replace(
                mode=GateMode.gated if self.probe is not None else GateMode.always
            ).to_metadata(),
            "cls_weight": str(hp.cls_weight),
            "objective": self.objective.name,
            "config": json.dumps(_jsonable(dict(hp)), sort_keys=True),
        }
        if self.gate_report is not None:
            metadata["gate"] = json.dumps(_jsonable(self.gate_report), sort_keys=True)
        return save_reminder(path, self.soft_prompt.weight, self.probe, metadata)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)
