"""SPA-VL test set (Zhang et al. 2024): the ``harm`` split (HarmEval) and the ``help`` split (HelpEval)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from reminder_lightning.data.readers import image_value, read_rows
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample


class SPAVLTest(Benchmark):
    """One split of SPA-VL's ``test`` config (hub ``sqrti/SPA-VL``; 265 questions each).

    Layout: the hub snapshot's ``test/harm-*.parquet`` / ``test/help-*.parquet`` (the parquet-converter branch
    has ``test/harm/0000.parquet``; both are found), columns ``image`` (``datasets`` Image struct
    ``{bytes, path}``), ``question``, ``class1``, ``class2``, ``class3``. ``root`` may also be one parquet /
    JSON / JSONL file of that split (e.g. an export with image paths relative to the file).

    Sample: ``prompt`` = ``judge_question`` = ``question``; ``category`` = ``class1`` (or ``class1/class2``,
    ... with ``category_depth``). ``harm``: ``harmful`` = True. ``help``: ``harmful`` = False (its questions
    come from the same harm taxonomy and are scored for helpfulness, so refusals there count as
    over-refusal); ``reference`` = the ``reference_column`` value where a row has one (the published test
    config has no answers).

    Args:
        root: The SPA-VL snapshot folder (holding ``test/``), or one file of the split.
        split: ``harm`` (harmful questions) or ``help`` (helpfulness questions).
        category_depth: How many of ``class1``/``class2``/``class3`` form the category (1-3).
        reference_column: Column holding a reference answer, used where present.
        image_root: Folder that relative image paths resolve against; default: the file's folder.
        n_per_category: Keep at most this many questions per category, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
    """

    def __init__(
        self,
        root: str,
        split: Literal["harm", "help"] = "harm",
        category_depth: int = 1,
        reference_column: str | None = "chosen",
        image_root: str | None = None,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__(root, n_per_category=n_per_category, seed=seed, limit=limit)
        if split not in ("harm", "help"):
            raise ValueError(f"split must be 'harm' or 'help', got {split!r}.")
        if category_depth not in (1, 2, 3):
            raise ValueError(f"category_depth must be 1, 2 or 3, got {category_depth}.")
        self.split, self.category_depth, self.reference_column = split, category_depth, reference_column
        self.image_root = Path(image_root) if image_root else None
        self.name = f"spa_vl_{split}"

    def layout_hint(self) -> str:
        return (
            f"Expected SPA-VL's test config: <root>/test/{self.split}-*.parquet (or test/{self.split}/*.parquet) "
            "with columns image, question, class1, class2, class3."
        )

    def files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        for pattern in (f"test/{self.split}-*.parquet", f"test/{self.split}/*.parquet", f"{self.split}-*.parquet"):
            found = sorted(self.root.glob(pattern))
            if found:
                return found
        raise FileNotFoundError(
            f"{self.name}: no {self.split} split files under {self.root}. {self.layout_hint()}"
        )

    def load_all(self) -> list[EvalSample]:
        samples = []
        n = 0
        for path in self.files():
            base = (self.image_root or path.parent).absolute()
            for i, row in enumerate(read_rows(path)):
                where = f"{path} row {i}"
                fix = "Fix: use SPA-VL's test config files (columns image, question, class1-3)."
                question = self.required(row, "question", where, fix)
                image = image_value(row.get("image"), base, where)
                if isinstance(image, str):
                    image = self.image_file(Path(image), where)
                classes = [
                    str(row[c]) for c in ("class1", "class2", "class3")[: self.category_depth] if row.get(c)
                ]
                reference = row.get(self.reference_column) if self.reference_column else None
                samples.append(
                    EvalSample(
                        id=f"{self.name}:{n}",
                        benchmark=self.name,
                        prompt=question,
                        image=image,
                        judge_question=question,
                        category="/".join(classes) or None,
                        harmful=self.split == "harm",
                        reference=str(reference) if reference else None,
                        meta={c: row.get(c) for c in ("class1", "class2", "class3")},
                    )
                )
                n += 1
        return samples
