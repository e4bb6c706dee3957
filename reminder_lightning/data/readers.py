"""Reading rows from JSON / JSON Lines / CSV / parquet files and turning them into records.

Shared by every record source; each function raises :class:`RecordError` or a plain error naming the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
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


def rows_of(path: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    for file in data_files(path, suffixes):
        for i, row in enumerate(read_rows(file)):
            yield file, i, row


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a ``.json`` / ``.jsonl`` / ``.csv`` / ``.parquet`` file as dicts, lazily; a file that is
    not UTF-8 text fails with its name, the byte offset and the fix."""
    try:
        yield from _read_rows(path)
    except UnicodeDecodeError as err:
        raise RecordError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}). Fix: re-encode the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)."
        ) from err


def _read_rows(path: Path) -> Iterator[dict[str, Any]]:
    suffix = check_suffix(path, SUPPORTED_SUFFIXES)
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
    confine: bool = True,
) -> Record:
    """Map one row onto a :class:`Record`, raising :class:`RecordError` for a missing required field."""
    record_id = optional_text(row, fields.id) or default_id
    label = f"{where}: record '{record_id}' (row {row_index})"
    if kind == "benign":
        _refuse_harmful_row(row, fields, label)
    harmful = required_text(row, fields.harmful_answer, "harmful_answer", label) if kind == "harmful" else None
    return Record(
        id=record_id,
        question=required_text(row, fields.question, "question", label),
        safe_answer=required_text(row, fields.safe_answer, "safe_answer", label),
        is_safe=kind == "benign",
        harmful_answer=harmful,
        image=image_value(row.get(fields.image) if fields.image else None, image_base, label, confine),
        category=optional_text(row, fields.category),
        source=f"{where} row {row_index}",
    )


HARMFUL_LABELS = {"harmful", "unsafe", "jailbreak"}  # text of a row's label / kind / safety column


def _refuse_harmful_row(row: dict[str, Any], fields: FieldMap, label: str) -> None:
    """A row that says it is harmful must not be trained as a benign one (its refusal would be taught as the
    helpful continuation of a harmful request)."""
    harmful_answer = row.get(fields.harmful_answer) if fields.harmful_answer else None
    if isinstance(harmful_answer, str) and harmful_answer.strip():
        raise RecordError(
            f"{label}: a benign record with a '{fields.harmful_answer}' (harmful answer): this row is harmful. "
            "Fix: load this file with kind: harmful, or drop the column from benign data."
        )
    for column, says_harmful in (
        ("label", HARMFUL_LABELS),
        ("kind", HARMFUL_LABELS),
        ("safety", HARMFUL_LABELS),
        ("is_safe", {"false", "0"}),
    ):
        value = row.get(column)
        if value is not None and str(value).strip().lower() in says_harmful:
            raise RecordError(
                f"{label}: column '{column}' is {value!r}, but the source is kind: benign. Fix: load harmful rows "
                "with kind: harmful (split the file), or drop them."
            )


def image_value(value: Any, base: Path | None, label: str, confine: bool = True) -> str | bytes | None:
    """Normalise an image cell to an absolute path, encoded bytes or ``None``.

    With ``confine`` (the default) a path must resolve (symlinks followed) inside ``base`` (``image_root``, or the
    data file's folder) or the working directory: a path that climbs out (``../../etc/passwd``) or an absolute path
    elsewhere is refused, since the file would be read, logged and uploaded with sample tables.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):  # the ``datasets`` Image feature layout: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return image_value(value["path"], base, label, confine)
        raise RecordError(f"{label}, field 'image': image struct has neither bytes nor path. Fix: re-export it.")
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_absolute():
            if base is None:
                raise RecordError(
                    f"{label}, field 'image': relative path '{value}' and no folder to resolve it against. "
                    "Fix: set `image_root`."
                )
            path = base / path
        if confine:
            _check_inside(path, value, base, label)
        return str(path)
    from PIL import Image

    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    raise RecordError(
        f"{label}, field 'image': holds {type(value).__name__}; expected a path, bytes or an image struct. "
        "Fix: set fields.image to the image column, or to null for text-only data."
    )


def _check_inside(path: Path, value: str, base: Path | None, label: str) -> None:
    resolved = os.path.realpath(path)
    roots = [os.path.realpath(r) for r in (base, Path.cwd()) if r is not None]
    if not any(resolved == r or resolved.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
        raise RecordError(
            f"{label}, field 'image': '{value}' resolves to {resolved}, outside the data root "
            f"({' and '.join(roots)}). Image paths must stay inside it: a path elsewhere would be read, logged "
            "and uploaded with sample tables. Fix: set `image_root` to the folder that holds the images, or "
            "`allow_outside_root: true` on this data source if the path is intended."
        )


def data_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """``path`` itself when it is a file, else the files with one of ``suffixes`` in that folder, sorted."""
    if path.is_file():
        check_suffix(path, suffixes)
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"data path not found: {path}. Fix: set `path` to a file or a folder.")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"{path}: no {', '.join(suffixes)} files in this folder. Fix: set `path`.")
    return files


def required_text(row: dict[str, Any], column: str | None, field: str, label: str) -> str:
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


def optional_text(row: dict[str, Any], column: str | None) -> str | None:
    value = row.get(column) if column is not None else None
    return None if value is None or value == "" else str(value)


def check_optional_columns(fields: FieldMap, columns: set[str], where: str) -> None:
    """An optional field mapped away from its default to a column no row has is a typo, not text-only data."""
    for field in ("image", "category", "id"):
        column = getattr(fields, field)
        if column is not None and column != getattr(FieldMap, field) and column not in columns:
            raise RecordError(
                f"{where}: fields.{field} is '{column}', but no row has that column. Columns present: "
                f"{sorted(columns)}. Fix: set fields.{field}: <column>, or null if the data has none."
            )


def checked(records: list[Record], where: str) -> list[Record]:
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


def check_suffix(path: Path, suffixes: tuple[str, ...]) -> str:
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise ValueError(f"{path}: unsupported file type '{suffix}'. Supported: {', '.join(suffixes)}.")
    return suffix


def check_settings(fields: FieldMap, kind: str, limit: int | None) -> None:
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
