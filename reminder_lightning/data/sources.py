"""Record sources: plug-ins that read one dataset layout into :class:`~reminder_lightning.data.records.Record`.

A source is chosen in YAML against the base class :class:`RecordSource`::

    harmful:
      class_path: reminder_lightning.data.sources.LocalRecords
      init_args: {path: data/tiny/harmful.jsonl, kind: harmful}

Every source validates at load time: a row without a required field raises :class:`RecordError` naming the
file, the row, the missing field, the columns that are present and the fix. Nothing is skipped silently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from itertools import islice
from pathlib import Path
from typing import Literal

from reminder_lightning.data.readers import (
    SUPPORTED_SUFFIXES,
    FieldMap,
    check_optional_columns,
    check_settings,
    check_suffix,
    checked,
    make_record,
    read_rows,
    required_text,
)
from reminder_lightning.data.records import Record


class RecordSource(ABC):
    """A dataset layout that reads into a list of records."""

    @property
    def name(self) -> str:
        """A short name; default ids are ``"<name>:<row index>"``."""
        return type(self).__name__

    @abstractmethod
    def load(self) -> list[Record]:
        """Read, validate and return all records (at most ``limit`` when the source has one)."""


def load_sources(sources: RecordSource | list[RecordSource] | None, owner: str, field: str) -> list[Record]:
    """The records of one source, or of a list of sources read in order (e.g. a split's training answers and the
    answers kept for the gate alone).

    Raises:
        ValueError: no source, or an empty list, naming ``owner`` and ``field``.
    """
    if sources is None or (isinstance(sources, list) and not sources):
        raise ValueError(f"{owner}: no {field} records: set `{field}` to a record source or a list of them.")
    return [r for source in (sources if isinstance(sources, list) else [sources]) for r in source.load()]


class LocalRecords(RecordSource):
    """Records from a local ``.json`` / ``.jsonl`` / ``.csv`` / ``.parquet`` file with your own column names.

    ``.json`` holds a list of objects or ``{"data": [...]}``; ``.jsonl`` one object a line.

    Args:
        path: The data file.
        kind: ``harmful`` (train towards the refusal in ``safe_answer``) or ``benign`` (continue helpfully).
        fields: Column names of the record fields, when they differ from the defaults of :class:`FieldMap`.
        image_root: Folder that relative image paths resolve against; default: the data file's folder.
        limit: Read only the first ``limit`` rows.
        allow_outside_root: Accept image paths outside ``image_root`` (or the file's folder) and the working
            directory; off by default (see :func:`~reminder_lightning.data.readers.image_value`).
    """

    def __init__(
        self,
        path: str,
        kind: Literal["harmful", "benign"],
        fields: FieldMap | None = None,
        image_root: str | None = None,
        limit: int | None = None,
        allow_outside_root: bool = False,
    ) -> None:
        self.path, self.kind, self.fields = Path(path), kind, fields or FieldMap()
        self.image_root, self.limit, self.allow_outside_root = image_root, limit, allow_outside_root
        check_suffix(self.path, SUPPORTED_SUFFIXES)
        check_settings(self.fields, kind, limit)

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
            records.append(
                make_record(
                    row, self.fields, self.kind, i, f"{self.name}:{i}", str(self.path), base,
                    confine=not self.allow_outside_root,
                )
            )  # fmt: skip
        check_optional_columns(self.fields, columns, str(self.path))
        return checked(records, str(self.path))


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
        check_settings(self.fields, kind, limit)

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
        check_optional_columns(self.fields, set(data.column_names), where)
        base = self._image_base()
        records = [
            make_record(row, self.fields, self.kind, i, f"{self.name}:{i}", where, base)
            for i, row in enumerate(data)
        ]
        return checked(records, where)

    def _image_base(self) -> Path | None:
        if self.image_root:
            return Path(self.image_root).absolute()
        files = [self.data_files] if isinstance(self.data_files, str) else self.data_files or []
        if len(files) == 1 and Path(files[0]).is_file():
            return Path(files[0]).absolute().parent
        return None


__all__ = ["FieldMap", "HubRecords", "LocalRecords", "RecordSource"]


class Instructions(RecordSource):
    """Text instructions without answers, for fitting a probe (``probe`` reads questions only).

    The reference's probe is fitted on 256 harmful and 256 harmless instructions. The lists it matches by name
    and field are the splits of Arditi et al.'s refusal-direction repository (``dataset/splits/harmful_train.json``,
    ``harmless_train.json``, ``*_val.json``: a JSON list of ``{"instruction": ..., "category": ...}``); any
    ``.json`` / ``.jsonl`` / ``.csv`` / ``.parquet`` file with a text column works. Records carry no answers, so
    SAPT training refuses them (it has nothing to cut prefixes from or to train towards).

    Args:
        path: The file.
        kind: ``harmful`` or ``benign``.
        field: The column holding the instruction.
        limit: Read only the first ``limit`` rows.
    """

    def __init__(
        self, path: str, kind: Literal["harmful", "benign"], field: str = "instruction", limit: int | None = None
    ) -> None:
        self.path, self.kind, self.field, self.limit = Path(path), kind, field, limit
        check_suffix(self.path, SUPPORTED_SUFFIXES)
        check_settings(FieldMap(), kind, limit)

    @property
    def name(self) -> str:
        return self.path.stem

    def load(self) -> list[Record]:
        if not self.path.is_file():
            raise FileNotFoundError(
                f"Instructions: file not found: {self.path}. Fix: set `path` (see the recipe)."
            )
        records = []
        for i, row in enumerate(islice(read_rows(self.path), self.limit)):
            question = required_text(row, self.field, "question", f"{self.path} row {i}")
            records.append(
                Record(
                    id=f"{self.name}:{i}", question=question, safe_answer="", is_safe=self.kind == "benign",
                    category=row.get("category") or None, source=f"{self.path}:{i}",
                )
            )  # fmt: skip
        return checked(records, str(self.path))
