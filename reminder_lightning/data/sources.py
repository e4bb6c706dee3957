"""Record sources: plug-ins that read one dataset layout into :class:`~reminder_lightning.data.records.Record`.

A source is chosen in YAML against the base class :class:`RecordSource`::

    harmful:
      class_path: reminder_lightning.data.sources.LocalRecords
      init_args: {path: data/tiny/harmful.jsonl, kind: harmful}

Every source validates at load time: a row without a required field raises :class:`RecordError` naming the
file, the row, the missing field, the columns that are present and the fix. Nothing is skipped silently.
"""

from __future__ import annotations

import csv
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from reminder_lightning.data.records import Record, RecordError

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


@dataclass
class FieldMap:
    """Which column of the data holds each record field. ``None`` means the data has no such column.

    Args:
        question: Column of the question text (required).
        image: Column of the image: a path (relative paths resolve against ``image_root``), raw bytes, or a
            ``{"bytes": ..., "path": ...}`` struct as written by the ``datasets`` Image feature.
        safe_answer: Column of the refusal (harmful data) or the helpful answer (benign data) (required).
        harmful_answer: Column of the compliant harmful answer (required for ``kind: harmful``).
        category: Column of the category.
        id: Column of a unique record id; without it ids are ``"<source-name>:<row index>"``.
    """

    question: str | None = "question"
    image: str | None = "image"
    safe_answer: str | None = "safe_answer"
    harmful_answer: str | None = "harmful_answer"
    category: str | None = "category"
    id: str | None = "id"


class RecordSource(ABC):
    """A dataset layout that reads into a list of records."""

    @property
    def name(self) -> str:
        """A short name; default ids are ``"<name>:<row index>"``."""
        return type(self).__name__

    @abstractmethod
    def load(self) -> list[Record]:
        """Read, validate and return all records (at most ``limit`` when the source has one)."""


class LocalRecords(RecordSource):
    """Records from a local ``.json`` / ``.jsonl`` / ``.csv`` / ``.parquet`` file with your own column names.

    ``.json`` holds a list of objects or ``{"data": [...]}``; ``.jsonl`` one object a line.

    Args:
        path: The data file.
        kind: ``harmful`` (train towards the refusal in ``safe_answer``) or ``benign`` (continue helpfully).
        fields: Column names of the record fields, when they differ from the defaults of :class:`FieldMap`.
        image_root: Folder that relative image paths resolve against; default: the data file's folder.
        limit: Read only the first ``limit`` rows.
    """

    def __init__(
        self,
        path: str,
        kind: Literal["harmful", "benign"],
        fields: FieldMap | None = None,
        image_root: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.path, self.kind, self.fields = Path(path), kind, fields or FieldMap()
        self.image_root, self.limit = image_root, limit
        _check_suffix(self.path, SUPPORTED_SUFFIXES)
        _check_settings(self.fields, kind, limit)

    @property
    def name(self) -> str:
        return self.path.stem

    def load(self) -> list[Record]:
        if not self.path.is_file():
            raise FileNotFoundError(f"LocalRecords: data file not found: {self.path}. Fix: set `path`.")
        base = Path(self.image_root).absolute() if self.image_root else self.path.absolute().parent
        records, columns = [], set()
        for i, row in enumerate(islice(read_rows(self.path), self.limit)):
            columns.update(row)
            records.append(make_record(row, self.fields, self.kind, i, f"{self.name}:{i}", str(self.path), base))
        _check_optional_columns(self.fields, columns, str(self.path))
        return _checked(records, str(self.path))


class HubRecords(RecordSource):
    """Records from a Hugging Face dataset through ``datasets.load_dataset``.

    Image columns of the ``datasets`` Image feature are read undecoded and kept as their encoded bytes; a
    column of PIL images is re-encoded as PNG. ``dataset`` may also be a packaged builder name
    (``json``, ``csv``, ``parquet``) with local ``data_files``.

    Args:
        dataset: Hub id (``sqrti/SPA-VL``) or builder name (``json``).
        kind: ``harmful`` or ``benign``, as in :class:`LocalRecords`.
        split: The split to read.
        fields: Column names of the record fields (see :class:`FieldMap`).
        subset: The dataset configuration (``name`` in ``load_dataset``).
        revision: A commit, tag or branch of the hub repository, to pin the data.
        data_files: Files for a builder name, passed through to ``load_dataset``.
        image_root: Folder that relative image paths resolve against; default: the folder of a single
            local ``data_files`` entry.
        cache_dir: The ``datasets`` cache folder; default: the ``datasets`` default.
        limit: Read only the first ``limit`` rows.
    """

    def __init__(
        self,
        dataset: str,
        kind: Literal["harmful", "benign"],
        split: str = "train",
        fields: FieldMap | None = None,
        subset: str | None = None,
        revision: str | None = None,
        data_files: str | list[str] | None = None,
        image_root: str | None = None,
        cache_dir: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.dataset, self.kind, self.split, self.fields = dataset, kind, split, fields or FieldMap()
        self.subset, self.revision, self.data_files = subset, revision, data_files
        self.image_root, self.cache_dir, self.limit = image_root, cache_dir, limit
        _check_settings(self.fields, kind, limit)

    @property
    def name(self) -> str:
        return f"{self.dataset}[{self.subset}]" if self.subset else self.dataset

    def load(self) -> list[Record]:
        from datasets import Image as ImageFeature
        from datasets import load_dataset

        data = load_dataset(
            self.dataset,
            self.subset,
            split=self.split,
            revision=self.revision,
            data_files=self.data_files,
            cache_dir=self.cache_dir,
        )
        if self.limit is not None:
            data = data.select(range(min(self.limit, len(data))))
        for column, feature in data.features.items():
            if isinstance(feature, ImageFeature):  # keep the encoded bytes, skip a decode/encode round trip
                data = data.cast_column(column, ImageFeature(decode=False))
        where = f"{self.name} split '{self.split}'" + (f" data_files {self.data_files}" if self.data_files else "")
        _check_optional_columns(self.fields, set(data.column_names), where)
        base = self._image_base()
        records = [
            make_record(row, self.fields, self.kind, i, f"{self.name}:{i}", where, base)
            for i, row in enumerate(data)
        ]
        return _checked(records, where)

    def _image_base(self) -> Path | None:
        if self.image_root:
            return Path(self.image_root).absolute()
        files = [self.data_files] if isinstance(self.data_files, str) else self.data_files or []
        if len(files) == 1 and Path(files[0]).is_file():
            return Path(files[0]).absolute().parent
        return None


class SPAVLTrain(RecordSource):
    """SPA-VL's train split (hub ``sqrti/SPA-VL``, Zhang et al. 2024) as harmful records.

    Two published layouts are read, from one file or a folder of them:

    * hub parquet, ``data/train-0000K-of-00008.parquet``: ``image`` (``datasets`` Image struct
      ``{bytes, path}``), ``question``, ``chosen``, ``rejected``, ``image_name``. The validation config and
      older revisions of the card carry ``class1``, ``class2``, ``class3`` instead of ``image_name``.
    * the meta file of ``train.zip`` (``meta.json``): objects with ``image`` as a relative path
      ``<class1>/<class2>/<class3>/<n>.jpg`` plus ``question``, ``chosen``, ``rejected``.

    Mapping: ``chosen`` -> ``safe_answer`` (the refusal), ``rejected`` -> ``harmful_answer``; ``category``
    is ``class1/class2/class3`` (or the folders of the meta-file image path); ``id`` is ``image_name`` (or
    the image path, else ``spa_vl:<row>``). The reference implementation keeps only rows whose ``rejected``
    answer Llama Guard judges unsafe; that filtering is not done here.

    Args:
        path: A parquet/json/jsonl file, or a folder of them (read in name order).
        image_root: Folder that relative image paths resolve against; default: each file's folder.
        limit: Read only the first ``limit`` rows over all files.
    """

    def __init__(self, path: str, image_root: str | None = None, limit: int | None = None) -> None:
        self.path, self.image_root, self.limit = Path(path), image_root, limit
        _check_settings(FieldMap(), "harmful", limit)

    @property
    def name(self) -> str:
        return "spa_vl"

    def load(self) -> list[Record]:
        fields = FieldMap(safe_answer="chosen", harmful_answer="rejected", category=None, id=None)
        records = []
        for n, (file, i, row) in enumerate(
            islice(_rows_of(self.path, (".parquet", ".json", ".jsonl")), self.limit)
        ):
            image = row.get("image")
            meta_path = image if isinstance(image, str) and "/" in image else None
            default_id = _optional_text(row, "image_name") or meta_path or f"{self.name}:{n}"
            base = Path(self.image_root).absolute() if self.image_root else file.absolute().parent
            record = make_record(row, fields, "harmful", i, default_id, str(file), base)
            classes = [row[c] for c in ("class1", "class2", "class3") if row.get(c)]
            record.category = "/".join(classes) if classes else meta_path and str(Path(meta_path).parent)
            records.append(record)
        return _checked(records, str(self.path))


class VLSafeHelpfulness(RecordSource):
    """The helpfulness dialogues of the LVLM_NLF / VLSafe release (Chen et al. 2023) as benign records.

    Hub ``YangyiYY/LVLM_NLF``, file ``LVLM_NLF/helpfulness_nlf.jsonl`` (the reference implementation samples
    its benign training data from it). One object a line: ``image_id`` (a COCO train2017 file name such as
    ``000000151112.jpg``), ``caption``, and ``interaction``, a list of turns
    ``{"user": ..., "model": ..., "rating": ..., "critique NLF": ...}``: turn 0 is the question and the first
    answer, later turns are feedback and the refined answer. ``question`` = ``interaction[0].user``;
    ``safe_answer`` = ``interaction[answer_turn].model`` (the reference reads turn 1; the default, the last
    turn, is the same answer for two-turn dialogues). Images come from COCO train2017 by ``image_id``.
    (The VLSafe folder itself, ``harmlessness_alignment.jsonl`` / ``harmlessness_examine.jsonl`` with
    ``image_id``, ``caption``, ``query``, holds harmful queries and is not read here.)

    Args:
        path: ``helpfulness_nlf.jsonl`` (or a sample of it in the same layout), or a folder of such files.
        image_root: The COCO ``train2017`` image folder.
        limit: Read only the first ``limit`` rows.
        answer_turn: Which turn's ``model`` reply is the helpful answer (Python index; -1 = last).
    """

    def __init__(self, path: str, image_root: str, limit: int | None = None, answer_turn: int = -1) -> None:
        self.path, self.image_root, self.limit, self.answer_turn = Path(path), image_root, limit, answer_turn
        _check_settings(FieldMap(), "benign", limit)

    @property
    def name(self) -> str:
        return "vlsafe_helpfulness"

    def load(self) -> list[Record]:
        base = Path(self.image_root).absolute()
        records = []
        for n, (file, i, row) in enumerate(islice(_rows_of(self.path, (".jsonl", ".json")), self.limit)):
            label = f"{file}: record '{self.name}:{n}' (row {i})"
            turns = row.get("interaction")
            if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
                raise RecordError(
                    f"{label}: missing field 'interaction' (a list of {{user, model}} turns). Columns present: "
                    f"{sorted(row)}. Fix: point `path` at LVLM_NLF/helpfulness_nlf.jsonl, or use LocalRecords "
                    "with `fields` for other layouts."
                )
            if not -len(turns) <= self.answer_turn < len(turns):
                raise RecordError(
                    f"{label}: answer_turn={self.answer_turn} but the dialogue has {len(turns)} turns."
                )
            image_id = row.get("image_id")
            if isinstance(image_id, int) or (isinstance(image_id, str) and image_id.isdigit()):
                image_id = f"{int(image_id):012d}.jpg"  # COCO file names are the zero-padded id
            texts = {"interaction[0].user": turns[0].get("user")}
            texts[f"interaction[{self.answer_turn}].model"] = turns[self.answer_turn].get("model")
            for field, value in [*texts.items(), ("image_id", image_id)]:
                if not isinstance(value, str) or not value.strip():
                    raise RecordError(
                        f"{label}: missing field '{field}' (empty or not text). Columns present: {sorted(row)}; "
                        f"turn keys: {sorted(turns[0])}. Fix: drop the row, or convert the file to this layout."
                    )
            question, answer = texts.values()
            records.append(
                Record(
                    id=f"{self.name}:{n}",
                    question=question,
                    safe_answer=answer,
                    is_safe=True,
                    image=image_value(image_id, base, label),
                    source=f"{file} row {i}",
                )
            )
        return _checked(records, str(self.path))


def _rows_of(path: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    for file in data_files(path, suffixes):
        for i, row in enumerate(read_rows(file)):
            yield file, i, row


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a ``.json`` / ``.jsonl`` / ``.csv`` / ``.parquet`` file as dicts, lazily."""
    suffix = _check_suffix(path, SUPPORTED_SUFFIXES)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            yield from batch.to_pylist()
        return
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            yield from csv.DictReader(f)
        return
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            if err.msg != "Extra data":  # "Extra data" = several documents: JSON lines named .json
                raise RecordError(f"{path}: not valid JSON ({err}). Fix: repair or re-export the file.") from err
        else:
            rows = data.get("data") if isinstance(data, dict) else data
            if not isinstance(rows, list):
                found = f"an object with keys {sorted(data)}" if isinstance(data, dict) else type(data).__name__
                raise RecordError(f'{path}: expected a list of objects or {{"data": [...]}}, found {found}.')
            yield from _objects(rows, path)
            return
    yield from _objects(_json_lines(text, path), path)


def make_record(
    row: dict[str, Any],
    fields: FieldMap,
    kind: Literal["harmful", "benign"],
    row_index: int,
    default_id: str,
    where: str,
    image_base: Path | None,
) -> Record:
    """Map one row onto a :class:`Record`, raising :class:`RecordError` for a missing required field."""
    record_id = _optional_text(row, fields.id) or default_id
    label = f"{where}: record '{record_id}' (row {row_index})"
    harmful = _required_text(row, fields.harmful_answer, "harmful_answer", label) if kind == "harmful" else None
    return Record(
        id=record_id,
        question=_required_text(row, fields.question, "question", label),
        safe_answer=_required_text(row, fields.safe_answer, "safe_answer", label),
        is_safe=kind == "benign",
        harmful_answer=harmful,
        image=image_value(row.get(fields.image) if fields.image else None, image_base, label),
        category=_optional_text(row, fields.category),
        source=f"{where} row {row_index}",
    )


def image_value(value: Any, base: Path | None, label: str) -> str | bytes | None:
    """Normalise an image cell to an absolute path, encoded bytes or ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):  # the ``datasets`` Image feature layout: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return image_value(value["path"], base, label)
        raise RecordError(f"{label}, field 'image': image struct has neither bytes nor path. Fix: re-export it.")
    if isinstance(value, str):
        path = Path(value).expanduser()
        if path.is_absolute():
            return str(path)
        if base is None:
            raise RecordError(
                f"{label}, field 'image': relative path '{value}' and no folder to resolve it against. "
                "Fix: set `image_root`."
            )
        return str(base / path)
    from PIL import Image

    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    raise RecordError(
        f"{label}, field 'image': holds {type(value).__name__}; expected a path, bytes or an image struct. "
        "Fix: set fields.image to the image column, or to null for text-only data."
    )


def data_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """``path`` itself when it is a file, else the files with one of ``suffixes`` in that folder, sorted."""
    if path.is_file():
        _check_suffix(path, suffixes)
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"data path not found: {path}. Fix: set `path` to a file or a folder.")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"{path}: no {', '.join(suffixes)} files in this folder. Fix: set `path`.")
    return files


def _required_text(row: dict[str, Any], column: str | None, field: str, label: str) -> str:
    present = f"Columns present: {sorted(row)}"
    why = " (required for kind=harmful)" if field == "harmful_answer" else ""
    if column is None or column not in row:
        found = "is mapped to no column" if column is None else f"expects column '{column}', which is absent"
        raise RecordError(
            f"{label}: missing field '{field}'{why}: fields.{field} {found}. {present}. "
            f"Fix: set fields.{field}: <column> to the column that holds it."
        )
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError(
            f"{label}: missing field '{field}'{why}: column '{column}' is empty (empty text counts as "
            f"missing). {present}. Fix: fill it in or drop the row; if another column holds it, set "
            f"fields.{field}: <column>."
        )
    if not isinstance(value, str):
        raise RecordError(
            f"{label}: field '{field}' (column '{column}') holds {type(value).__name__}, expected text. "
            f"{present}. Fix: set fields.{field}: <column> to a text column."
        )
    return value


def _optional_text(row: dict[str, Any], column: str | None) -> str | None:
    value = row.get(column) if column is not None else None
    return None if value is None or value == "" else str(value)


def _check_optional_columns(fields: FieldMap, columns: set[str], where: str) -> None:
    """An optional field mapped away from its default to a column no row has is a typo, not text-only data."""
    for field in ("image", "category", "id"):
        column = getattr(fields, field)
        if column is not None and column != getattr(FieldMap, field) and column not in columns:
            raise RecordError(
                f"{where}: fields.{field} is '{column}', but no row has that column. Columns present: "
                f"{sorted(columns)}. Fix: set fields.{field}: <column>, or null if the data has none."
            )


def _checked(records: list[Record], where: str) -> list[Record]:
    if not records:
        raise RecordError(f"{where}: no records. Fix: check the file (and `split` / `limit`).")
    seen: dict[str, Record] = {}
    for record in records:
        if record.id in seen:
            raise RecordError(
                f"{where}: record id '{record.id}' appears twice ({seen[record.id].source} and "
                f"{record.source}). Fix: make the id column unique, or set fields.id: null to number rows."
            )
        seen[record.id] = record
    return records


def _objects(rows: Any, path: Path) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RecordError(f"{path} row {i}: expected an object, found {type(row).__name__}.")
        yield row


def _json_lines(text: str, path: Path) -> Iterator[Any]:
    for line_number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(
                    f"{path} line {line_number}: not valid JSON ({err.msg}). Fix: repair it."
                ) from err


def _check_suffix(path: Path, suffixes: tuple[str, ...]) -> str:
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise ValueError(f"{path}: unsupported file type '{suffix}'. Supported: {', '.join(suffixes)}.")
    return suffix


def _check_settings(fields: FieldMap, kind: str, limit: int | None) -> None:
    if kind not in ("harmful", "benign"):
        raise ValueError(f"kind must be 'harmful' or 'benign', got {kind!r}.")
    required = ["question", "safe_answer"] + (["harmful_answer"] if kind == "harmful" else [])
    for field in required:
        if getattr(fields, field) is None:
            raise ValueError(
                f"fields.{field} is null, but {field} is required for kind={kind}. Fix: name its column."
            )
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of rows or null, got {limit}.")
