"""JailBreakV-28K (Luo et al., COLM 2024): text jailbreaks and image attacks against VLMs."""

from __future__ import annotations

import csv
from typing import Literal

from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample

FILES = {"mini": "mini_JailBreakV_28K.csv", "full": "JailBreakV_28K.csv"}


class JailBreakV28K(Benchmark):
    """JailBreakV-28K's full set (28,000 rows) or its mini split (280).

    Layout: hub ``JailbreakV-28K/JailBreakV-28k``, folder ``JailBreakV_28K/`` with ``JailBreakV_28K.csv``,
    ``mini_JailBreakV_28K.csv`` and the image folders ``figstep/``, ``llm_transfer_attack/``,
    ``query_related/``. CSV columns: ``id, jailbreak_query, redteam_query, format, policy, image_path, from,
    selected_mini, transfer_from_llm``; ``image_path`` is relative to the CSV's folder.

    Sample: ``prompt`` = ``jailbreak_query`` (what the attacker sends); ``judge_question`` =
    ``redteam_query`` (the plain harmful request); ``category`` = ``policy``; ``image`` = ``image_path``
    (None when empty); ``harmful`` = True; ``format``, ``from`` and ``transfer_from_llm`` go to ``meta``.

    Args:
        root: The ``JailBreakV_28K`` folder (or the snapshot root holding it), or the CSV itself.
        subset: ``mini`` (280 rows, ``mini_JailBreakV_28K.csv``) or ``full`` (``JailBreakV_28K.csv``).
        n_per_category: Keep at most this many rows per policy, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
    """

    def __init__(
        self,
        root: str,
        subset: Literal["mini", "full"] = "mini",
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__(root, n_per_category=n_per_category, seed=seed, limit=limit)
        if subset not in FILES:
            raise ValueError(f"subset must be 'mini' or 'full', got {subset!r}.")
        self.subset = subset
        self.name = "jailbreakv_mini" if subset == "mini" else "jailbreakv"

    def layout_hint(self) -> str:
        return (
            f"Expected JailBreakV-28K's JailBreakV_28K/{FILES[self.subset]} (columns id, jailbreak_query, "
            "redteam_query, format, policy, image_path, ...) with image_path relative to that folder. The hub "
            "folder's images may cover only the mini split; the full set's come as the authors' image archive."
        )

    def load_all(self) -> list[EvalSample]:
        name = FILES[self.subset]
        path = self.find_file(self.root / name, self.root / "JailBreakV_28K" / name)
        samples = []
        with path.open(newline="", encoding="utf-8-sig") as f:
            for i, row in enumerate(csv.DictReader(f)):
                where = f"{path} row {i + 1}"
                fix = f"Fix: use the published {name}."
                image = (row.get("image_path") or "").strip()
                samples.append(
                    EvalSample(
                        id=f"jailbreakv:{(row.get('id') or '').strip() or i}",
                        benchmark=self.name,
                        prompt=self.required(row, "jailbreak_query", where, fix),
                        image=self.image_file(path.parent / image, where) if image else None,
                        judge_question=self.required(row, "redteam_query", where, fix),
                        category=self.required(row, "policy", where, fix),
                        harmful=True,
                        meta={k: row.get(k) for k in ("format", "from", "transfer_from_llm", "selected_mini")},
                    )
                )
        return samples
