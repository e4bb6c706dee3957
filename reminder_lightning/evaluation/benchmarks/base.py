"""The base class of every benchmark loader, and the small file helpers the loaders share."""

from __future__ import annotations

import os
import random
from abc import ABC, abstractmethod
from collections import defaultdict
from pathlib import Path
from typing import Any

from reminder_lightning.types import EvalSample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def _seeded(names: list[str], n: int, seed: int, stratum: str) -> list[str]:
    rng = random.Random(f"{seed}:{stratum}")
    return names if len(names) <= n else rng.sample(names, n)


def _datasets_shuffle(names: list[str], n: int, seed: int, stratum: str) -> list[str]:
    import numpy as np

    return [names[int(i)] for i in np.random.default_rng(seed).permutation(len(names))[:n]]


def _numpy_choice(names: list[str], n: int, seed: int, stratum: str) -> list[str]:
    import numpy as np

    if len(names) <= n:
        return names
    return [names[int(i)] for i in np.random.RandomState(seed).choice(len(names), n, replace=False)]


#: ``draw`` name -> (units in file order, n, seed, stratum) -> the units kept.
DRAWS = {"seeded": _seeded, "datasets_shuffle": _datasets_shuffle, "numpy_choice": _numpy_choice}


class Benchmark(ABC):
    """A prompt set in its published layout.

    Subclasses implement :meth:`load_all` (every sample, in file order); :meth:`load` applies the seeded
    ``n_per_category`` subsample and ``limit``, and records the selection in each sample's ``meta``.

    The draw is per ``(sample.benchmark, category)`` and picks whole *sampling units*
    (:meth:`sampling_unit`: a sample alone by default; MME keeps both questions of an image, MM-SafetyBench
    every image type of a question). Its generator is seeded by ``seed``, the benchmark family (the name
    before any ``/``) and the category, so one seed selects the same questions for every MM-SafetyBench
    image type, whether they are loaded together or by separate instances.

    Two further draws reproduce the reference code's subsets exactly (``draw``): ``datasets_shuffle`` is
    ``datasets``' ``shuffle(seed).select(range(n))`` per category (NumPy ``default_rng(seed).permutation``; the
    reference's MM-SafetyBench 394), ``numpy_choice`` is ``np.random.seed(seed); np.random.choice(N, n,
    replace=False)`` (the reference's VLSafe 300). Both draw over the units in file order; the samples keep file
    order.

    Args:
        root: The benchmark's folder (or file) in its published layout.
        n_per_category: Keep at most this many sampling units per category, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall (after the per-category draw, in file order).
        draw: ``seeded`` (this package's), ``datasets_shuffle`` or ``numpy_choice`` (the reference's, above).
    """

    #: Short name used in outputs and metric keys (``val/<name>/asr``).
    name: str = "benchmark"

    def __init__(
        self,
        root: str,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        draw: str = "seeded",
    ):
        if draw not in DRAWS:
            raise ValueError(f"draw must be one of {list(DRAWS)}, got {draw!r}.")
        self.draw = draw
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

    def sampling_unit(self, sample: EvalSample) -> str:
        """Samples with the same unit are kept or dropped together by the ``n_per_category`` draw."""
        return sample.id

    def load(self) -> list[EvalSample]:
        """The evaluated selection (seeded per-category subsample, then ``limit``)."""
        if not self.root.exists():
            raise FileNotFoundError(f"{self.name}: {self.root} does not exist. {self.layout_hint()}")
        samples = self.load_all()
        if not samples:
            raise ValueError(f"{self.name}: no samples found under {self.root}. {self.layout_hint()}")
        seen: set[str] = set()
        for s in samples:
            if s.id in seen:
                raise ValueError(f"{self.name}: duplicate sample id {s.id!r} under {self.root}.")
            seen.add(s.id)
        if self.n_per_category is not None:
            units: dict[tuple[str, str], dict[str, None]] = defaultdict(dict)  # stratum -> units, in order
            for s in samples:
                units[(s.benchmark, str(s.category))][self.sampling_unit(s)] = None
            keep: set[tuple[tuple[str, str], str]] = set()
            for (benchmark, category), ordered in units.items():
                names = list(ordered)
                chosen = DRAWS[self.draw](
                    names, self.n_per_category, self.seed, f"{benchmark.split('/')[0]}:{category}"
                )
                keep.update(((benchmark, category), u) for u in chosen)
            samples = [s for s in samples if ((s.benchmark, str(s.category)), self.sampling_unit(s)) in keep]
        if self.limit is not None:
            samples = samples[: self.limit]
        for s in samples:
            s.meta.setdefault(
                "selection",
                {"n_per_category": self.n_per_category, "seed": self.seed, "limit": self.limit, "draw": self.draw},
            )
        return samples

    def layout_hint(self) -> str:
        """One line on the files this loader expects (shown in errors)."""
        return "See the README's Benchmarks section for the expected layout."

    def utility_metrics(self, samples: list[EvalSample], answers: list[str]) -> dict[str, float]:
        """Benchmark-specific utility scores (MME accuracy, ...); none by default."""
        return {}

    def export(self, samples: list[EvalSample], answers: list[str], output_dir: Path) -> Path | None:
        """Write the answers in a form an outside grader reads (MM-Vet's), into ``output_dir``; none by default."""
        return None

    # Helpers for subclasses -------------------------------------------------------------------------------

    def find_file(self, *candidates: Path) -> Path:
        """The first existing file among ``candidates`` (``root`` itself when it is a file)."""
        if self.root.is_file():
            return self.root
        for path in candidates:
            if path.is_file():
                return path
        tried = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(f"{self.name}: none of these files exists: {tried}. {self.layout_hint()}")

    def image_file(self, path: Path, where: str) -> str:
        """``path`` as an absolute, normalised string, after checking that the file exists."""
        if not path.is_file():
            raise FileNotFoundError(
                f"{where}: image file not found: {path}. {self.layout_hint()} Fix: download the images into "
                "that layout, or point the image folder argument at them."
            )
        return os.path.normpath(path.absolute())

    def required(self, row: dict[str, Any], field: str, where: str, fix: str = "") -> str:
        """``row[field]`` as non-empty text, else an error naming the file/row, the field and the fix."""
        value = row.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            state = "is empty" if field in row else "is missing"
            raise ValueError(
                f"{where}: field '{field}' {state}. Fields present: {sorted(row)}. {fix or self.layout_hint()}"
            )
        if not isinstance(value, str):
            raise ValueError(
                f"{where}: field '{field}' holds {type(value).__name__} ({value!r:.60}), expected text: it would be "
                f"sent to the model as its Python repr. {fix or self.layout_hint()}"
            )
        return value


def with_suffix(stem: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> Path | None:
    """The first existing ``stem + suffix`` (case as listed, then upper case), or None."""
    for suffix in suffixes + tuple(s.upper() for s in suffixes):
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    return None
