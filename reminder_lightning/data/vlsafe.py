"""VLSafe / LVLM_NLF helpfulness dialogues as benign records (see :class:`VLSafeHelpfulness`)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from reminder_lightning.data.readers import (
    FieldMap,
    check_settings,
    checked,
    image_value,
    rows_of,
)
from reminder_lightning.data.records import Record, RecordError
from reminder_lightning.data.sources import RecordSource


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
        check_settings(FieldMap(), "benign", limit)

    @property
    def name(self) -> str:
        return "vlsafe_helpfulness"

    def load(self) -> list[Record]:
        base = Path(self.image_root).absolute()
        records = []
        for n, (file, i, row) in enumerate(islice(rows_of(self.path, (".jsonl", ".json")), self.limit)):
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
        return checked(records, str(self.path))
