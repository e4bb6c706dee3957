"""The one record type every data source produces, and the image loader that goes with it.

A :class:`Record` is one training or evaluation example: a question (with or without an image), the answer
to train towards and, for harmful questions, the compliant answer whose prefixes the objective cuts. Sources
(:mod:`reminder_lightning.data.sources`) map their own column names onto it once, at load time, so the rest
of the package never sees a dataset's own layout.

Images stay undecoded in the record (a path or the encoded bytes) so loading 100k records is cheap and a
broken image is reported when it is opened, with the record that holds it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


class RecordError(ValueError):
    """A record that cannot be used: the message names the file, the record, the field and the fix."""


@dataclass
class Record:
    """One question with its answers.

    Attributes:
        id: Unique within its source; taken from the data or ``"<source-name>:<row index>"``.
        question: The user's question, as text.
        safe_answer: Harmful record: the refusal to train towards. Benign record: the helpful answer.
        is_safe: ``True`` for a benign record, ``False`` for a harmful one.
        harmful_answer: Harmful records only: the compliant answer whose prefixes are cut.
        image: An absolute path (``str``) or the raw encoded bytes of the image; ``None`` for text only.
        category: The harm (or topic) category, when the data has one.
        source: Where the record came from (file path or hub id, and row number), for error messages.
    """

    id: str
    question: str
    safe_answer: str
    is_safe: bool
    harmful_answer: str | None = None
    image: str | bytes | None = None
    category: str | None = None
    source: str = ""


def load_image(record: Record) -> Image.Image:
    """Decode the record's image and return it in RGB.

    Raises:
        RecordError: The record has no image, its file does not exist, or the file or bytes cannot be
            decoded. The message names the source, the record id, the field ``image`` and the fix.
    """
    return decode_image(record.image, record.source, record.id)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, scaling 16-bit grey (``I;16``, or ``I`` holding values above 255) and float grey in [0, 1] to 8 bits:
    PIL's ``convert`` clips values above 255, which turns a 16-bit PNG near white."""
    if image.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        return image.convert("RGB")
    import numpy as np
    from PIL import Image as PILImage

    values = np.asarray(image, dtype=np.float64)
    peak = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16") or (image.mode == "I" and peak > 255):
        top = 65535.0
    elif image.mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = 255.0
    grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return PILImage.fromarray(grey).convert("RGB")


def decode_image(image: str | bytes | None, source: str, record_id: str) -> Image.Image:
    """Decode an image given as a path or encoded bytes; errors name ``source``, ``record_id`` and the field."""
    from PIL import Image, UnidentifiedImageError

    where = f"{source or '<unknown source>'}: record '{record_id}', field 'image'"
    if image is None:
        raise RecordError(
            f"{where}: the record has no image (text-only). Fix: check `record.image is not None` before "
            "calling load_image, or give the record an image path."
        )
    if isinstance(image, bytes):
        what, fp = f"{len(image)} embedded bytes", io.BytesIO(image)
    else:
        path = Path(image)
        if not path.is_file():
            raise RecordError(
                f"{where}: image file not found: {path}. Fix: correct the path in the data, or set "
                "`image_root` to the folder that relative image paths are relative to."
            )
        what, fp = f"file {path}", path
    try:
        with Image.open(fp) as image:
            image.load()
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise RecordError(
            f"{where}: cannot decode the image ({what}): {err}. Fix: re-export the image as PNG or JPEG, "
            "or remove the record from the data."
        ) from err


def attacked_copies(records: list[Record], images: list[str]) -> list[Record]:
    """Each record once per image, shown that image instead of its own (ids ``<id>+adv<k>``)."""
    for path in images:
        if not Path(path).is_file():
            raise FileNotFoundError(f"adversarial image {path} does not exist (an attack's adversarial.png).")
    return [
        replace(r, id=f"{r.id}+adv{k}", image=str(Path(path).absolute()), source=f"{r.source} with {path}")
        for k, path in enumerate(images)
        for r in records
    ]


def suffixed_copies(records: list[Record], groups: list[list[str]]) -> list[Record]:
    """Each record once per group of adversarial text suffixes, its question followed by one of the group's
    suffixes, taken in turn (record ``i`` gets suffix ``i mod len(group)``; ids ``<id>+sfx<g>``).

    A group is what one run of a suffix attack made (a suffix per goal): reading every record with every suffix
    would multiply the states by the number of goals; in turn, each group adds as many states as an image does.
    """
    for g, group in enumerate(groups):
        if not group or not all(isinstance(s, str) and s.strip() for s in group):
            raise ValueError(
                f"adversarial suffix group {g} is empty or holds an empty suffix: {group!r}. Fix: give each group the "
                "suffixes one attack run made (its gcg_suffixes.jsonl `suffix` column)."
            )
    return [
        replace(
            r,
            id=f"{r.id}+sfx{g}",
            question=f"{r.question} {group[i % len(group)]}",
            source=f"{r.source} with suffix group {g}",
        )  # fmt: skip
        for g, group in enumerate(groups)
        for i, r in enumerate(records)
    ]
