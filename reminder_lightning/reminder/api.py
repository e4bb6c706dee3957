"""SafetyReminder: the small public face of a trained reminder.

    from reminder_lightning import SafetyReminder
    reminder = SafetyReminder.load("runs/llava/reminder.safetensors")
    outputs = reminder.generate(model, processor, images, prompts, max_new_tokens=256)
    print(outputs[0].text, outputs[0].flagged, outputs[0].checks)

``model`` and ``processor`` are the plain transformers objects (or a :class:`VLMAdapter`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reminder_lightning.reminder.artifact import ReminderArtifact, load_reminder
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.generation import (
    ReminderGenerationConfig,
    ReminderGenerator,
    ReminderOutput,
    StepEvent,
)
from reminder_lightning.reminder.generation.config import SCHEDULE_FIELDS
from reminder_lightning.reminder.schedule import GateMode, ReminderSchedule
from reminder_lightning.reminder.soft_prompt import SoftPrompt
from reminder_lightning.vlm.adapter import VLMAdapter


class SafetyReminder:
    """A trained reminder (soft prompt + probe + default gating) ready to defend any matching model.

    Args:
        soft_prompt: The reminder vectors.
        probe: The safety probe (needed for the default ``mode="gated"``).
        config: Default decoding and gating settings.
        metadata: What the artifact says about itself (base model, family, ...).
    """

    def __init__(
        self,
        soft_prompt: SoftPrompt,
        probe: SafetyProbe | None = None,
        config: ReminderGenerationConfig | None = None,
        metadata: dict[str, str] | None = None,
    ):
        self.soft_prompt = soft_prompt
        self.probe = probe
        self.config = config or ReminderGenerationConfig()
        self.metadata = dict(metadata or {})

    @classmethod
    def from_artifact(cls, artifact: ReminderArtifact, **config: Any) -> SafetyReminder:
        """``config``: decoding fields and schedule fields (``interval``, ``threshold``, ``mode``, ...) that
        replace the artifact's."""
        schedule_changes = {k: config.pop(k) for k in SCHEDULE_FIELDS if k in config}
        if artifact.probe is None and "mode" not in schedule_changes:
            schedule_changes["mode"] = GateMode.always  # no gate to decide with
        schedule = ReminderSchedule.from_metadata(artifact.metadata, **schedule_changes)
        return cls(
            artifact.soft_prompt_module(),
            artifact.probe,
            ReminderGenerationConfig(**config, schedule=schedule),
            artifact.metadata,
        )

    @classmethod
    def load(cls, path: str | Path, **config: Any) -> SafetyReminder:
        """Load ``reminder.safetensors``; ``config`` overrides its interval / threshold / decoding defaults.

        An artifact without a probe defaults to ``mode="always"`` (no gate to decide with).
        """
        return cls.from_artifact(load_reminder(path), **config)

    def generator(self, model, processor=None) -> ReminderGenerator:
        adapter = VLMAdapter.wrap(model, processor)
        base = self.metadata.get("model_type")
        if base and base != adapter.inputs.config.model_type:
            raise ValueError(
                f"This reminder was trained on a {base!r} model ({self.metadata.get('base_model')}), not on "
                f"{adapter.inputs.config.model_type!r}."
            )
        return ReminderGenerator(adapter, self.soft_prompt, self.probe, self.config)

    def generate(
        self, model, processor, images: list | None, prompts: list[str], **overrides: Any
    ) -> list[ReminderOutput]:
        """Defended generation for a batch; ``overrides`` are :class:`ReminderGenerationConfig` fields."""
        return self.generator(model, processor).generate(images, prompts, **overrides)

    def stream(self, model, processor, images: list | None, prompts: list[str], **overrides: Any):
        """Like :meth:`generate`, yielding :class:`StepEvent` text increments as they are produced."""
        yield from self.generator(model, processor).stream(images, prompts, **overrides)


__all__ = ["ReminderOutput", "SafetyReminder", "StepEvent"]
