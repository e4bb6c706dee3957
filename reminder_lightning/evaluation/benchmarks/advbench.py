"""AdvBench harmful behaviours (Zou et al. 2023), text only or paired with (adversarial) images."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from reminder_lightning.evaluation.benchmarks.base import IMAGE_SUFFIXES, Benchmark
from reminder_lightning.types import EvalSample

FILE_NAME = "harmful_behaviors.csv"


def reference_split(n: int, seed: int = 42) -> tuple[list[int], list[int], list[int]]:
    """The reference's AdvBench split as (train, validation, test) indices: ``datasets``' ``train_test_split(
    test_size=200, seed)`` (train 320 of 520), then the 200 split in half the same way (its train half is the
    validation set). Reproduced with NumPy's ``default_rng(seed).permutation``, as ``datasets`` draws it."""
    import numpy as np

    if n <= 200:
        raise ValueError(f"the reference split holds out 200 goals; {n} goals are too few. Fix: split: seeded.")
    first = np.random.default_rng(seed).permutation(n)
    held, train = first[:200], first[200:]
    second = np.random.default_rng(seed).permutation(200)
    test, val = held[second[:100]], held[second[100:]]
    return [int(i) for i in train], [int(i) for i in val], [int(i) for i in test]


class AdvBench(Benchmark):
    """AdvBench's 520 harmful behaviours, each asked with every given image (or as text only).

    Layout: ``data/advbench/harmful_behaviors.csv`` of ``github.com/llm-attacks/llm-attacks``, columns
    ``goal,target`` (``target`` is the affirmative prefix attacks optimise for, e.g. "Sure, here is ...").

    Sample: ``prompt`` = ``judge_question`` = ``goal``; ``meta["target"]`` = ``target``; ``harmful`` = True.
    With ``image_dir`` every goal is paired with each image (the universal adversarial image setting);
    ``category`` is then the image's file name, so ``n_per_category`` draws goals per image. Without it the
    samples are text only and have no category.

    Args:
        root: ``harmful_behaviors.csv``, or the folder holding it.
        image_dir: A folder of images (each paired with every goal), or one image file; None: text only.
        n_per_category: Keep at most this many goals per image, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
        split: ``all``, or one part of the reference's 320 / 100 / 100 split (:func:`reference_split`, the split
            its PGD and BAP runs use); sample ids keep the CSV row number.
    """

    name = "advbench"

    def __init__(
        self,
        root: str,
        image_dir: str | None = None,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        split: Literal["all", "train", "validation", "test"] = "all",
    ) -> None:
        super().__init__(root, n_per_category=n_per_category, seed=seed, limit=limit)
        self.image_dir = Path(image_dir) if image_dir else None
        if split not in ("all", "train", "validation", "test"):
            raise ValueError(f"split must be all, train, validation or test, got {split!r}.")
        self.split = split

    def layout_hint(self) -> str:
        return f"Expected AdvBench's {FILE_NAME} (columns goal,target), as in llm-attacks/data/advbench/."

    def images(self) -> list[Path | None]:
        if self.image_dir is None:
            return [None]
        if self.image_dir.is_file():
            return [self.image_dir]
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"{self.name}: image_dir {self.image_dir} does not exist. Fix: set image_dir.")
        found = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise FileNotFoundError(
                f"{self.name}: no {', '.join(IMAGE_SUFFIXES)} files in image_dir {self.image_dir}. Fix: set image_dir."
            )
        return found

    def load_all(self) -> list[EvalSample]:
        path = self.find_file(self.root / FILE_NAME)
        images = self.images()
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        keep = set(range(len(rows)))
        if self.split != "all":
            parts = dict(zip(("train", "validation", "test"), reference_split(len(rows)), strict=True))
            keep = set(parts[self.split])
        samples = []
        for image in images:
            for i, row in enumerate(rows):
                if i not in keep:
                    continue
                where = f"{path} row {i + 1}"
                goal = self.required(row, "goal", where, f"Fix: use the published {FILE_NAME} (goal,target).")
                samples.append(
                    EvalSample(
                        id=f"advbench:{i}" if image is None else f"advbench:{image.name}:{i}",
                        benchmark=self.name,
                        prompt=goal,
                        image=None if image is None else str(image.absolute()),
                        judge_question=goal,
                        category=None if image is None else image.name,
                        harmful=True,
                        meta={"target": row.get("target", ""), "row": i},
                    )
                )
        return samples
