"""A record source made from a finished ``test`` run: its prompts, split by a judge's refusal verdicts.

Not a dataset layout like :mod:`reminder_lightning.data.sources`, but the model's own behaviour read back as
records: DRO's refusal direction is fitted from it (``configs/probe_refusal_<family>.yaml``).
"""

from __future__ import annotations

from pathlib import Path

from reminder_lightning.data.readers import checked, read_rows
from reminder_lightning.data.records import Record
from reminder_lightning.data.sources import RecordSource


class JudgedAnswers(RecordSource):
    """The prompts of a ``test`` run, labelled by what the model did with them: refused or answered.

    A probe needs two classes; this source gives the prompts whose answers ``judge`` calls refusals
    (``refused: true``) or not (``refused: false``), as records without answers. It is how a refusal direction is
    fitted for DRO (:mod:`reminder_lightning.defences.dro`), as the reference does from its model's own answers::

        probe: harmful = JudgedAnswers(run_dir, refused: false), benign = JudgedAnswers(run_dir, refused: true)

    so the probe's positive class (label 1, ``is_safe``) is "the model refuses".

    Args:
        run_dir: A ``test`` output folder (``generations.jsonl`` and ``judgements.<judge>.jsonl``).
        refused: Which prompts: those the model refused (True) or answered (False).
        judge: Whose verdicts decide.
        benchmarks: Only these benchmarks of the run (None: all).
        with_images: Keep each prompt's image. A run stores an image given as bytes (SPA-VL's parquet) as
            ``"<bytes>"``, not the image: such a run is read with ``with_images: false`` (text only, as the reference
            fits its probes), or it stops with an error naming the record.
    """

    def __init__(
        self,
        run_dir: str,
        refused: bool,
        judge: str = "keyword",
        benchmarks: list[str] | None = None,
        with_images: bool = True,
    ):
        self.run_dir, self.refused, self.judge = Path(run_dir), refused, judge
        self.benchmarks = None if benchmarks is None else set(benchmarks)
        self.with_images = with_images

    @property
    def name(self) -> str:
        return f"{self.run_dir.name}:{'refused' if self.refused else 'answered'}"

    def load(self) -> list[Record]:
        answers, verdicts_path = (
            self.run_dir / "generations.jsonl",
            self.run_dir / f"judgements.{self.judge}.jsonl",
        )
        for path in (answers, verdicts_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"JudgedAnswers: {path} not found. Fix: point run_dir at a finished `test` folder judged by "
                    f"{self.judge!r} (`python -m reminder_lightning judge --output_dir {self.run_dir}`)."
                )
        verdicts = {row["key"]: row for row in read_rows(verdicts_path)}
        records = []
        for i, row in enumerate(read_rows(answers)):
            if self.benchmarks is not None and row["benchmark"] not in self.benchmarks:
                continue
            verdict = verdicts.get(row["key"])
            if verdict is None or verdict.get("refusal") is None:
                raise ValueError(
                    f"{verdicts_path}: no refusal verdict for {row['key']!r} (line {i + 1} of {answers}). Fix: judge "
                    f"the run again with a judge that decides refusals."
                )
            if bool(verdict["refusal"]) != self.refused:
                continue
            image = row.get("image") if self.with_images else None
            if image == "<bytes>":
                raise ValueError(
                    f"{answers}:{i + 1} ({row['key']!r}): the run stored this prompt's image as bytes, not a path, so "
                    "it cannot be read back. Fix: with_images: false (text only), or answer prompts whose images "
                    "are files."
                )
            records.append(
                Record(
                    id=str(row["key"]), question=row["prompt"], safe_answer="", is_safe=self.refused,
                    image=image, category=row.get("category"), source=f"{answers}:{i + 1}",
                )
            )  # fmt: skip
        if not records:
            raise ValueError(
                f"JudgedAnswers: {self.judge!r} finds no {'refused' if self.refused else 'answered'} prompt in "
                f"{answers}: a probe cannot learn a direction from one class."
            )
        return checked(records, str(answers))
