"""SPA-VL train split as harmful records (one plug-in, see :class:`SPAVLTrain`)."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

from reminder_lightning.data.readers import (
    FieldMap,
    check_settings,
    checked,
    make_record,
    optional_text,
    rows_of,
)
from reminder_lightning.data.records import Record, RecordError
from reminder_lightning.data.sources import RecordSource


class SPAVLTrain(RecordSource):
    """SPA-VL's train split (hub ``sqrti/SPA-VL``, Zhang et al. 2024) as harmful records.

    Two published layouts are read, from one file or a folder of them:

    * hub parquet, ``data/train-0000K-of-00008.parquet``: ``image`` (``datasets`` Image struct
      ``{bytes, path}``), ``question``, ``chosen``, ``rejected``, ``image_name``. The validation config and
      older revisions of the card carry ``class1``, ``class2``, ``class3`` instead of ``image_name``.
    * the meta file of ``train.zip`` (``meta.json``): objects with ``image`` as a relative path
      ``<class1>/<class2>/<class3>/<n>.jpg`` plus ``question``, ``chosen``, ``rejected``.

    Mapping: ``chosen`` -> ``safe_answer`` (the refusal), ``rejected`` -> ``harmful_answer``; ``category``
    is ``class1/class2/class3`` (or the folders of the meta-file image path, or, for the hub parquet, of the
    ``meta`` file's entry ``n`` for ``image_name`` ``n.jpg``, as the reference does); ``id`` is ``image_name``
    (or the image path, else ``spa_vl:<row>``).

    The reference trains on a selection: 7 category groups, a pair kept only when Llama Guard judges ``rejected``
    unsafe and ``chosen`` safe, a category-stratified draw of 1000. ``python -m reminder_lightning select-spa-vl``
    makes it (:mod:`~reminder_lightning.commands.select_spa_vl`) and ``selection`` reads it back.

    Args:
        path: A parquet/json/jsonl file, or a folder of them (read in name order).
        image_root: Folder that relative image paths resolve against; default: each file's folder.
        limit: Read only the first ``limit`` rows over all files.
        meta: ``train.zip``'s ``meta.json``: the category of each hub-parquet row (its question must match).
        selection: A ``select-spa-vl`` output (JSON with ``ids``): keep only those records; an id that is not
            in the data stops the load (the selection was made from other data).
    """

    def __init__(
        self,
        path: str,
        image_root: str | None = None,
        limit: int | None = None,
        meta: str | None = None,
        selection: str | None = None,
    ) -> None:
        self.path, self.image_root, self.limit = Path(path), image_root, limit
        self.meta = Path(meta) if meta else None
        self.selection = Path(selection) if selection else None
        check_settings(FieldMap(), "harmful", limit)

    @property
    def name(self) -> str:
        return "spa_vl"

    def load(self) -> list[Record]:
        fields = FieldMap(safe_answer="chosen", harmful_answer="rejected", category=None, id=None)
        meta = self._meta()
        records = []
        for n, (file, i, row) in enumerate(
            islice(rows_of(self.path, (".parquet", ".json", ".jsonl")), self.limit)
        ):
            image = row.get("image")
            meta_path = image if isinstance(image, str) and "/" in image else None
            default_id = optional_text(row, "image_name") or meta_path or f"{self.name}:{n}"
            base = Path(self.image_root).absolute() if self.image_root else file.absolute().parent
            record = make_record(row, fields, "harmful", i, default_id, str(file), base)
            classes = [row[c] for c in ("class1", "class2", "class3") if row.get(c)]
            record.category = "/".join(classes) if classes else meta_path and str(Path(meta_path).parent)
            if not record.category and meta is not None:
                record.category = self._meta_category(meta, row, record)
            records.append(record)
        return self._selected(checked(records, str(self.path)))

    def _meta(self) -> list[dict] | None:
        if self.meta is None:
            return None
        if not self.meta.is_file():
            raise FileNotFoundError(
                f"SPAVLTrain: meta file not found: {self.meta}. Fix: unzip SPA-VL's train.zip (hub sqrti/SPA-VL) "
                "and point `meta` at its meta.json."
            )
        return json.loads(self.meta.read_text(encoding="utf-8"))

    def _meta_category(self, meta: list[dict], row: dict, record: Record) -> str:
        name = optional_text(row, "image_name") or ""
        stem = name.split(".")[0]
        if not stem.isdigit() or int(stem) >= len(meta):
            raise RecordError(
                f"{record.source}: record '{record.id}', field 'image_name': '{name}' is not an index of {self.meta} "
                f"({len(meta)} entries). Fix: use the meta.json of the same SPA-VL release."
            )
        entry = meta[int(stem)]
        if entry.get("question") != row.get("question"):
            raise RecordError(
                f"{record.source}: record '{record.id}': its question differs from {self.meta} entry {stem}. Fix: use "
                "the meta.json of the same SPA-VL release."
            )
        return str(Path(entry["image"]).parent)

    def _selected(self, records: list[Record]) -> list[Record]:
        if self.selection is None:
            return records
        if not self.selection.is_file():
            raise FileNotFoundError(
                f"SPAVLTrain: selection not found: {self.selection}. Fix: make it with `python -m reminder_lightning "
                "select-spa-vl` (see the recipe), or drop `selection`."
            )
        ids = json.loads(self.selection.read_text(encoding="utf-8")).get("ids") or []
        if not ids:
            raise RecordError(
                f"{self.selection}: the selection holds no ids (no pair qualified?). Fix: look at its 'groups' "
                "counts, then make it again (another judge, or larger quotas)."
            )
        by_id = {r.id: r for r in records}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise RecordError(
                f"{self.selection}: {len(missing)} selected ids are not in {self.path} (first: {missing[0]!r}). Fix: "
                "make the selection again from this data."
            )
        return [by_id[i] for i in ids]
