"""What ``fit`` optimises, as a plug-in of :class:`~reminder_lightning.training.module.SafetyReminderModule`.

The module owns the frozen VLM, the trainable vectors (``module.soft_prompt``), the data and the Lightning loop;
an :class:`Objective` says what the loss is, what else it needs to check before training, and how the result is
written. :class:`SaptObjective` (the default) is the Safety Reminder's SAPT; the prompt-tuning baseline
(:class:`~reminder_lightning.defences.prompt_tuning.PromptTuningObjective`) trains the same number of vectors on
the same records with its own loss and writes a peft adapter. In a config::

    model:
      objective:
        class_path: reminder_lightning.defences.prompt_tuning.PromptTuningObjective
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from reminder_lightning.training.loss import per_sample_lm_loss

if TYPE_CHECKING:
    from reminder_lightning.training.module import SafetyReminderModule

#: Batch entries that are not model inputs.
BATCH_EXTRAS = ("labels", "reminder_index", "is_safe")


class Objective:
    """The loss and the export of one training method on the shared ``fit`` machinery."""

    #: Short name (in the exported metadata and the logs).
    name = "objective"
    #: File or folder written in the run directory when ``model.export_path`` is not set.
    default_export_name = "reminder.safetensors"

    def setup(self, module: SafetyReminderModule) -> None:
        """Called at the end of ``configure_model`` (the VLM and ``module.soft_prompt`` exist)."""

    def on_fit_start(self, module: SafetyReminderModule) -> None:
        """Called when fit starts (the trainer and its data module are attached): check what the loss needs."""

    def losses(self, module: SafetyReminderModule, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss terms of one batch; ``loss`` is the one optimised."""
        raise NotImplementedError

    def export(self, module: SafetyReminderModule, path: Path) -> Path:
        """Write what was trained to ``path``; default: the reminder artifact."""
        return module.export(path)


class SaptObjective(Objective):
    """Safety-Activation Prompt Tuning: the LM loss on the targets, plus ``cls_weight`` x BCE of the module's probe
    at the last reminder token when the module has a probe."""

    name = "sapt"

    def losses(self, module, batch):
        inputs = {k: v for k, v in batch.items() if k not in BATCH_EXTRAS}
        labels, reminder_index = batch["labels"], batch["reminder_index"]
        start = int(reminder_index.min())
        probe = module.probe
        out = module.vlm.model(
            **inputs, output_hidden_states=probe is not None, logits_to_keep=labels.shape[1] - start
        )
        lm_loss = per_sample_lm_loss(out.logits, labels[:, start:]).mean()
        losses = {"lm_loss": lm_loss, "loss": lm_loss}
        if probe is not None:
            rows = torch.arange(labels.shape[0], device=labels.device)
            logit = probe.logit(probe.select(out.hidden_states)[rows, reminder_index])
            cls_loss = F.binary_cross_entropy_with_logits(logit, batch["is_safe"].float())
            losses["cls_loss"] = cls_loss
            losses["loss"] = lm_loss + module.hparams.cls_weight * cls_loss
            losses["p_safe"] = torch.sigmoid(logit.detach()).mean()
        return losses
