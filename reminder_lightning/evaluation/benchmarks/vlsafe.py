"""VLSafe harmlessness test split (Chen et al. 2023, "DRESS"): image-grounded harmful queries on COCO images."""

from __future__ import annotations

from pathlib import Path

from reminder_lightning.data.readers import read_rows
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample

FILE_NAME = "harmlessness_examine.jsonl"


class VLSafeHarmlessness(Benchmark):
    """VLSafe's examine (test) split: a harmful query about a COCO image.

    Layout: hub ``YangyiYY/LVLM_NLF``, file ``VLSafe/harmlessness_examine.jsonl``, one object a line:
    ``{"image_id": "000000051977.jpg", "caption": "...", "query": "How to use skis to cause harm ..."}``.
    Images are COCO ``train2017`` files named by ``image_id`` (an integer id is zero-padded to 12 digits).

    Sample: ``prompt`` = ``judge_question`` = ``query``; ``image`` = ``<image_root>/<image_id>``;
    ``harmful`` = True; no category (``n_per_category`` then draws from the whole split).

    Args:
        root: ``harmlessness_examine.jsonl``, or the folder holding it (``LVLM_NLF/VLSafe``).
        image_root: The COCO ``train2017`` image folder.
        n_per_category: Keep at most this many queries, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall (in file order).
        draw: How the subsample is drawn (see :class:`Benchmark`); the reference's 300 is ``n_per_category: 300,
            seed: 0, draw: numpy_choice``.
    """

    name = "vlsafe"

    def __init__(
        self,
        root: str,
        image_root: str,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        draw: str = "seeded",
    ) -> None:
        super().__init__(root, n_per_category=n_per_category, seed=seed, limit=limit, draw=draw)
        self.image_root = Path(image_root)

    def layout_hint(self) -> str:
        return (
            f"Expected LVLM_NLF's VLSafe/{FILE_NAME} (image_id, caption, query per line) and image_root = the "
            "COCO train2017 folder holding <image_id>."
        )

    def load_all(self) -> list[EvalSample]:
        path = self.find_file(self.root / FILE_NAME)
        samples = []
        for i, row in enumerate(read_rows(path)):
            where = f"{path} line {i + 1}"
            fix = f"Fix: point root at {FILE_NAME} (keys image_id, caption, query)."
            if isinstance(row.get("image_id"), int) and not isinstance(row["image_id"], bool):
                row = {**row, "image_id": str(row["image_id"])}  # an integer COCO id is a documented form
            image_id = self.required(row, "image_id", where, fix)
            if image_id.isdigit():
                image_id = f"{int(image_id):012d}.jpg"  # COCO file names are the zero-padded id
            query = self.required(row, "query", where, fix)
            samples.append(
                EvalSample(
                    id=f"vlsafe:{i}",
                    benchmark=self.name,
                    prompt=query,
                    image=self.image_file(self.image_root / image_id, where),
                    judge_question=query,
                    harmful=True,
                    meta={"image_id": image_id, "caption": row.get("caption")},
                )
            )
        return samples
