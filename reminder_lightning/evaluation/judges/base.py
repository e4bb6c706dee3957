"""The base class of every judge."""

from __future__ import annotations

from abc import ABC, abstractmethod

from reminder_lightning.types import Verdict


class Judge(ABC):
    """Decides, for batches of (question, answer), whether the answer is unsafe and whether it refuses.

    Judges see the *original* request (``EvalSample.judge_question``), never a jailbreak's wrapper.
    """

    #: Short name used in outputs (``keyword``, ``llama_guard_3``, ...).
    name: str = "judge"

    @abstractmethod
    def judge(self, questions: list[str], answers: list[str], images: list | None = None) -> list[Verdict]:
        """One :class:`Verdict` per (question, answer); ``images`` only for multimodal judges."""
