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

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | Path,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **config: Any,
    ) -> SafetyReminder:
        """Load from an artifact file, a folder :meth:`save_pretrained` wrote, or a hub repo id (``org/name``,
        at ``revision``; through the hub cache, so a cached revision loads offline with ``local_files_only=True``
        or ``HF_HUB_OFFLINE=1``). ``config`` as in :meth:`load`."""
        from reminder_lightning.reminder.hub import resolve_artifact

        return cls.load(resolve_artifact(path_or_repo_id, revision, cache_dir, local_files_only, token), **config)

    def _artifact_metadata(self) -> dict[str, str]:
        """The metadata to save: the loaded artifact's, with this reminder's current schedule."""
        metadata = dict(self.metadata)
        metadata.update(self.config.schedule.to_metadata())
        return metadata

    def save_pretrained(
        self,
        save_directory: str | Path,
        results: str | Path | dict | None = None,
        training_data: str | None = None,
    ) -> Path:
        """Write ``reminder.safetensors`` and a model card (``README.md``) into ``save_directory``.

        Args:
            results: A ``compare.json`` (or its folder, or the loaded dict) whose rows go into the card's results.
            training_data: What the reminder was trained on, for the card (else the artifact's ``training_data``).
        """
        from reminder_lightning.reminder.hub import save_folder

        return save_folder(
            save_directory, self.soft_prompt.weight, self.probe, self._artifact_metadata(), results, training_data
        )

    def push_to_hub(
        self,
        repo_id: str,
        results: str | Path | dict | None = None,
        training_data: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        api: Any = None,
    ):
        """Save (as :meth:`save_pretrained`) and upload to ``repo_id`` as one commit, creating the repository if
        needed; ``api``: an ``huggingface_hub.HfApi`` (default: a new one, reading ``HF_TOKEN``)."""
        from reminder_lightning.reminder.hub import push_to_hub

        return push_to_hub(
            self.soft_prompt.weight, self.probe, self._artifact_metadata(), repo_id, results, training_data,
            private=private, token=token, revision=revision, commit_message=commit_message, api=api,
        )  # fmt: skip

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
