"""The base class of every attack."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from reminder_lightning.types import EvalSample


class Attack(ABC):
    """Turns harmful evaluation samples into attacked samples.

    Optimising attacks (PGD, GCG) first :meth:`fit` their image or suffix against a model; rendering attacks
    (typographic) need no model. :meth:`apply` never changes ``judge_question``.
    """

    #: Short name used in outputs (benchmark name ``<benchmark>+<attack>``).
    name: str = "attack"

    def fit(self, samples: list[EvalSample], output_dir: Path) -> None:  # noqa: B027 (optional hook)
        """Optimise whatever the attack optimises (nothing by default)."""

    @abstractmethod
    def apply(self, samples: list[EvalSample], output_dir: Path) -> list[EvalSample]:
        """Attacked copies of ``samples``; files (images) go under ``output_dir``."""
