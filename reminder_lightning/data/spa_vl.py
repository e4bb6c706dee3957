"""SPA-VL train split as harmful records (one plug-in, see :class:`SPAVLTrain`)."""

from __future__ import annotations

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
from reminder_lightning.data.records import Record
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
        check_settings(FieldMap(), "harmful", limit)

    @property
    def name(self) -> str:
        return "spa_vl"

    def load(self) -> list[Record]:
        fields = FieldMap(safe_answer="chosen", harmful_answer="rejected", category=None, id=None)
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
            records.append(record)
        return checked(records, str(self.path))
