"""The base class of every benchmark loader."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import defaultdict
from pathlib import Path

from reminder_lightning.evaluation.types import EvalSample


class Benchmark(ABC):
    """A prompt set in its published layout.

    Subclasses implement :meth:`load_all` (every sample, in file order); :meth:`load` applies the seeded
    ``n_per_category`` subsample and ``limit``, and records the selection in each sample's ``meta``.

    Args:
        root: The benchmark's folder (or file) in its published layout.
        n_per_category: Keep at most this many samples per category, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall (after the per-category draw, in file order).
    """

    #: Short name used in outputs and metric keys (``val/<name>/asr``).
    name: str = "benchmark"

    def __init__(self, root: str, n_per_category: int | None = None, seed: int = 0, limit: int | None = None):
        if n_per_category is not None and n_per_category < 1:
            raise ValueError(f"n_per_category must be >= 1 or None, got {n_per_category}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.root = Path(root)
        self.n_per_category = n_per_category
        self.seed = seed
        self.limit = limit

    @abstractmethod
    def load_all(self) -> list[EvalSample]:
        """Every sample of the benchmark, in the published order."""

    def load(self) -> list[EvalSample]:
        """The evaluated selection (seeded per-category subsample, then ``limit``)."""
        if not self.root.exists():
            raise FileNotFoundError(f"{self.name}: {self.root} does not exist. {self.layout_hint()}")
        samples = self.load_all()
        if not samples:
            raise ValueError(f"{self.name}: no samples found under {self.root}. {self.layout_hint()}")
        ids = [s.id for s in samples]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"{self.name}: duplicate sample id {dup!r} under {self.root}.")
        if self.n_per_category is not None:
            by_cat: dict[str | None, list[int]] = defaultdict(list)
            for i, s in enumerate(samples):
                by_cat[s.category].append(i)
            rng = random.Random(f"{self.seed}:{self.name}")
            keep: set[int] = set()
            for cat in sorted(by_cat, key=str):
                idx = by_cat[cat]
                keep.update(idx if len(idx) <= self.n_per_category else rng.sample(idx, self.n_per_category))
            samples = [s for i, s in enumerate(samples) if i in keep]
        if self.limit is not None:
            samples = samples[: self.limit]
        for s in samples:
            s.meta.setdefault(
                "selection", {"n_per_category": self.n_per_category, "seed": self.seed, "limit": self.limit}
            )
        return samples

    def layout_hint(self) -> str:
        """One line on the files this loader expects (shown in errors)."""
        return "See the README's Benchmarks section for the expected layout."

    def utility_metrics(self, samples: list[EvalSample], answers: list[str]) -> dict[str, float]:
        """Benchmark-specific utility scores (MME accuracy, ...); none by default."""
        return {}
