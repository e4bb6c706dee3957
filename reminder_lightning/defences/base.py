"""The base class of every defence (decoding settings, shared by all of them, are
:class:`~reminder_lightning.reminder.generation.DecodingSettings`)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from reminder_lightning.reminder.generation import DecodingSettings, ReminderOutput
from reminder_lightning.vlm.adapter import PromptBuilder, VLMAdapter

__all__ = ["AttackSurface", "DecodingSettings", "Defence"]


def _unchanged(question: str) -> str:
    return question


@dataclass
class AttackSurface:
    """What the model sees under a defence, for an attack that optimises through it
    (:class:`~reminder_lightning.attacks.defence_aware_pgd.DefenceAwarePGDAttack`).

    Attributes:
        builder: The prompt builder the defence asks the model with (its system prompt; vectors' placeholder
            tokens after the prompt).
        wrap: The question as the defence rewrites it.
        context: Entered around every forward pass (trained vectors swapped in for their placeholders).
    """

    builder: PromptBuilder
    wrap: Callable[[str], str] = _unchanged
    context: Callable[[], AbstractContextManager] = field(default=contextlib.nullcontext)


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

    def attack_surface(self) -> AttackSurface:
        """After :meth:`setup`: the prompt, wording and vectors an attack that knows this defence optimises through.
        A defence whose answer is one differentiable pass over a changed input overrides this; the others have
        attacks of their own (the Safety Reminder: adaptive PGD and GCG) or none yet."""
        raise ValueError(
            f"{type(self).__name__} has no attack surface: its answer is not one forward pass over a changed input "
            "(the Safety Reminder: attack it with AdaptivePGDAttack or AdaptiveGCGAttack, which know its gate; ECSO "
            "answers in several passes)."
        )

    @classmethod
    def has_attack_surface(cls) -> bool:
        """Whether :meth:`attack_surface` is defined for this class (no instance, no model needed)."""
        return cls.attack_surface is not Defence.attack_surface
