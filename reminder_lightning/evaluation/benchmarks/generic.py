"""Any JSON / JSONL / CSV / parquet prompt set with an id, a question, and optionally an image and category."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reminder_lightning.data.readers import data_files, image_value, optional_text, read_rows
from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


@dataclass
class BenchmarkFields:
    """Which column holds each sample field. ``None`` means the data has no such column.

    Args:
        question: Column of the question given to the model (required).
        id: Column of a unique id; without it ids are ``"<name>:<row number>"``.
        image: Column of the image: a path (relative paths resolve against ``image_root`` or the file's
            folder), raw bytes, or a ``{"bytes": ..., "path": ...}`` struct.
        category: Column of the category (per-category scores and ``n_per_category``).
        judge_question: Column of the request the judge sees; where absent or empty, the question.
        reference: Column of a reference answer (utility benchmarks).
        target: Column of an attack target string (AdvBench's "Sure, here is ..."), kept as ``meta["target"]``
            for the optimising attacks (PGD, GCG).
    """

    question: str = "question"
    id: str | None = "id"
    image: str | None = "image"
    category: str | None = "category"
    judge_question: str | None = "judge_question"
    reference: str | None = "reference"
    target: str | None = "target"


class GenericBenchmark(Benchmark):
    """A prompt set in a plain table: one row per question, columns mapped by ``fields``.

    Reads a ``.json`` (list of objects, or ``{"data": [...]}``), ``.jsonl``, ``.csv`` or ``.parquet`` file,
    or every such file in a folder (name order). Sample: ``prompt`` = ``fields.question``;
    ``judge_question`` = ``fields.judge_question`` where present, else the question; ``harmful`` for every
    row from ``harmful``. Example (``data/tiny/eval/harmful.jsonl``)::

        {"id": "eval-harmful-00", "question": "...", "image": "../images/harmful_00.png", "category": "weapons"}

    Args:
        path: The file, or a folder of such files.
        name: The benchmark's name in outputs and metric keys (``val/<name>/asr``).
        harmful: True: harmful requests (count towards ASR); False: benign ones (over-refusal, utility).
        fields: Which column holds each field (default: the field names themselves).
        image_root: Folder that relative image paths resolve against; default: each file's folder.
        n_per_category: Keep at most this many rows per category, drawn with ``seed`` (None: all).
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
        allow_outside_root: Accept image paths outside ``image_root`` (or the file's folder) and the working
            directory; off by default (see :func:`~reminder_lightning.data.readers.image_value`).
    """

    def __init__(
        self,
        path: str,
        name: str = "generic",
        harmful: bool = True,
        fields: BenchmarkFields | None = None,
        image_root: str | None = None,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        allow_outside_root: bool = False,
    ) -> None:
        super().__init__(path, n_per_category=n_per_category, seed=seed, limit=limit)
        self.allow_outside_root = allow_outside_root
        if not name.strip():
            raise ValueError("name is empty. Fix: give the benchmark a short name, e.g. 'tiny_harmful'.")
        self.name, self.harmful = name, harmful
        self.fields = fields if fields is not None else BenchmarkFields()
        if not self.fields.question:
            raise ValueError("fields.question is empty, but the question is required. Fix: name its column.")
        self.image_root = Path(image_root) if image_root else None

    def layout_hint(self) -> str:
        f = self.fields
        return (
            f"Expected a {'/'.join(SUFFIXES)} file (or a folder of them) with column '{f.question}' (question) "
            f"and optionally '{f.id}' (id), '{f.image}' (image), '{f.category}' (category), "
            f"'{f.judge_question}' (judge question); set `fields` to map other column names."
        )

    def load_all(self) -> list[EvalSample]:
        samples = []
        for file in data_files(self.root, SUFFIXES):
            rows = list(read_rows(file))
            self._check_columns(file, rows)
            base = (self.image_root or file.parent).absolute()
            for i, row in enumerate(rows):
                sample_id = optional_text(row, self.fields.id) or f"{self.name}:{len(samples)}"
                where = f"{file} row {i} (id '{sample_id}')"
                fix = "Fix: fill it in, or set fields.question to the column that holds the question."
                question = self.required(row, self.fields.question, where, fix)
                cell = row.get(self.fields.image) if self.fields.image else None
                image = image_value(cell, base, where, confine=not self.allow_outside_root)
                if isinstance(image, str):
                    image = self.image_file(Path(image), f"{where}, field '{self.fields.image}'")
                samples.append(
                    EvalSample(
                        id=sample_id,
                        benchmark=self.name,
                        prompt=question,
                        image=image,
                        judge_question=optional_text(row, self.fields.judge_question) or question,
                        category=optional_text(row, self.fields.category),
                        harmful=self.harmful,
                        reference=optional_text(row, self.fields.reference),
                        meta=_meta(f"{file} row {i}", optional_text(row, self.fields.target)),
                    )
                )
        return samples

    def _check_columns(self, file: Path, rows: list[dict]) -> None:
        """A field mapped away from its default to a column no row has is a typo, not missing data."""
        columns = set().union(*(row.keys() for row in rows)) if rows else set()
        for field in ("id", "image", "category", "judge_question", "reference", "target"):
            column = getattr(self.fields, field)
            if column is not None and column != getattr(BenchmarkFields, field) and column not in columns:
                raise ValueError(
                    f"{file}: fields.{field} is '{column}', but no row has that column. Columns present: "
                    f"{sorted(columns)}. Fix: set fields.{field} to an existing column, or null."
                )


def _meta(source: str, target: str | None) -> dict[str, str]:
    return {"source": source} if target is None else {"source": source, "target": target}
