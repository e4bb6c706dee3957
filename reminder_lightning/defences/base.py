"""The base class of every defence (decoding settings, shared by all of them, are
:class:`~reminder_lightning.reminder.generation.DecodingSettings`)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from reminder_lightning.reminder.generation import DecodingSettings, ReminderOutput
from reminder_lightning.vlm.adapter import VLMAdapter

__all__ = ["DecodingSettings", "Defence"]


class Defence(ABC):
    """Generates answers for a batch of (image or None, prompt) with some protection (or none)."""

    #: Name used in outputs and tables.
    name: str = "defence"

    @abstractmethod
    def setup(self, adapter: VLMAdapter) -> None:
        """Bind to the model (called once, after the model is loaded and placed)."""

    @abstractmethod
    def generate(
        self, images: list | None, prompts: list[str], decoding: DecodingSettings
    ) -> list[ReminderOutput]:
        """One :class:`ReminderOutput` per prompt (undefended ones are never flagged)."""

    def describe(self) -> dict:
        """Settings that identify this defence in outputs."""
        return {"name": self.name}
