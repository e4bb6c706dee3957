"""Over-refusal: benign questions that sound sensitive (XSTest's safe prompts, or any such list)."""

from __future__ import annotations

from pathlib import Path

from reminder_lightning.data.readers import data_files, image_value, optional_text, read_rows
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


class OverRefusal(Benchmark):
    """Benign questions a well-calibrated model should answer; a refusal counts as over-refusal.

    Two layouts, told apart by their columns:

    * XSTest (``xstest_prompts.csv`` of ``github.com/paul-rottger/xstest``): ``id,prompt,type,label,focus,
      note``; only rows with ``label`` == ``keep_label`` ("safe": 250 of 450) are kept; ``category`` =
      ``type`` (homonyms, figurative_language, safe_targets, ...).
    * A plain list (``.json`` / ``.jsonl`` / ``.csv`` / ``.parquet``) with a ``question`` field and optional
      ``id``, ``category``, ``image`` (relative paths resolve against ``image_root`` or the file's folder).

    Sample: ``prompt`` = ``judge_question`` = the question; ``harmful`` = False.

    Args:
        root: The file, or a folder of such files.
        name: The benchmark's name in outputs and metric keys (``val/<name>/refusal``).
        question_field: Column of the question (None: ``question``, else XSTest's ``prompt``).
        category_field: Column of the category (None: ``category``, else XSTest's ``type``).
        keep_label: Where rows have a ``label`` column, keep only rows with this label (None: keep all).
        image_root: Folder that relative image paths resolve against; default: each file's folder.
        n_per_category: Keep at most this many questions per category, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
    """

    def __init__(
        self,
        root: str,
        name: str = "over_refusal",
        question_field: str | None = None,
        category_field: str | None = None,
        keep_label: str | None = "safe",
        image_root: str | None = None,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__(root, n_per_category=n_per_category, seed=seed, limit=limit)
        self.name, self.question_field, self.category_field = name, question_field, category_field
        self.keep_label = keep_label
        self.image_root = Path(image_root) if image_root else None

    def layout_hint(self) -> str:
        return (
            "Expected XSTest's xstest_prompts.csv (id,prompt,type,label,...) or a .json/.jsonl/.csv/.parquet list "
            "with a 'question' field (optional id, category, image)."
        )

    def load_all(self) -> list[EvalSample]:
        samples = []
        for file in data_files(self.root, SUFFIXES):
            base = (self.image_root or file.parent).absolute()
            for i, row in enumerate(read_rows(file)):
                if self.keep_label is not None and "label" in row and row["label"] != self.keep_label:
                    continue
                question_field = self.question_field or ("question" if "question" in row else "prompt")
                category_field = self.category_field or ("category" if "category" in row else "type")
                sample_id = f"{self.name}:{optional_text(row, 'id') or len(samples)}"
                where = f"{file} row {i} (id '{sample_id}')"
                fix = "Fix: name the question column with question_field."
                question = self.required(row, question_field, where, fix)
                image = image_value(row.get("image"), base, where)
                if isinstance(image, str):
                    image = self.image_file(Path(image), f"{where}, field 'image'")
                samples.append(
                    EvalSample(
                        id=sample_id,
                        benchmark=self.name,
                        prompt=question,
                        image=image,
                        judge_question=question,
                        category=optional_text(row, category_field),
                        harmful=False,
                        meta={k: row[k] for k in ("focus", "note", "label") if row.get(k)},
                    )
                )
        return samples
