"""The base class of every defence, and the decoding settings shared by all of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

from reminder_lightning.reminder.generation import ReminderOutput
from reminder_lightning.vlm.adapter import VLMAdapter


@dataclass
class DecodingSettings:
    """How every defence decodes (recorded with every number, since it moves ASR).

    Args:
        max_new_tokens: Tokens generated at most.
        do_sample: Sample (True) or greedy (False).
        temperature: Sampling temperature.
        top_p: Nucleus mass (1.0 = off).
        top_k: Top-k (0 = off).
        repetition_penalty: 1.0 = off.
        seed: Sampling seed.
    """

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = 0

    def as_dict(self) -> dict:
        return asdict(self)


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
