"""MMBench (Liu et al., ECCV 2024): multiple-choice questions about an image, scored with CircularEval."""

from __future__ import annotations

import base64
import binascii
import csv
import re
import sys
from collections import defaultdict

from reminder_lightning.evaluation.benchmarks.base import Benchmark
from reminder_lightning.types import EvalSample

LETTERS = "ABCD"
#: LLaVA-1.5's MMBench instruction (its evaluation scripts append it to every question).
LLAVA_SUFFIX = "Answer with the option's letter from the given choices directly."
#: Indices at or above this mark a circular copy in the published TSVs: ``index % CIRCULAR_BASE`` is the question.
CIRCULAR_BASE = 1_000_000


def parse_choice(text: str, options: dict[str, str]) -> str | None:
    """The option letter a free-text answer picks: a leading letter ("B", "(B)", "B. text"), then "answer is B" /
    "Answer: B", then the one option whose text the answer contains; None when none of these decides."""
    letters = "".join(options)
    lead = re.match(rf"^[\s(\[*]*([{letters}])(?![A-Za-z])", text.strip())
    if lead:
        return lead.group(1)
    said = re.search(rf"answer(?: is|:)\s*\(?([{letters}])(?![A-Za-z])", text, flags=re.IGNORECASE)
    if said:
        return said.group(1).upper()
    lowered = text.lower()
    named = [k for k, v in options.items() if v.strip() and v.strip().lower() in lowered]
    return named[0] if len(named) == 1 else None


class MMBench(Benchmark):
    """MMBench's published TSV (``MMBench_DEV_EN.tsv`` and the like; OpenCompass / VLMEvalKit downloads).

    Columns: ``index``, ``question``, ``hint`` (may be empty), ``A`` ... ``D`` (unused options empty), ``answer``
    (the letter), ``category``, ``image`` (base64). Rows whose ``index`` is ``>= 1_000_000`` are circular copies
    of question ``index % 1_000_000``; a TSV without them gets them made here (``circular``): a question with n
    options is asked n times, its options rotated by 0 .. n-1 and the answer letter moved with them.

    Sample: ``prompt`` = ``Hint: ...`` (when there is one) + the question + ``A. ...`` lines + ``suffix``;
    ``reference`` = the answer letter; ``category`` = ``category``; ``harmful`` = False; ``image`` = the decoded
    bytes. CircularEval (:meth:`utility_metrics`) counts a question right only when every one of its copies is.

    Args:
        root: The TSV file, or a folder holding exactly one ``*.tsv``.
        circular: Make the rotated copies when the TSV has none (False: each question once, plain accuracy only).
        suffix: Instruction appended to every prompt (default: LLaVA-1.5's).
        n_per_category: Keep at most this many questions (with all their copies) per category.
        seed: Seed of the subsample.
        limit: Keep at most this many samples overall.
    """

    name = "mmbench"

    def __init__(
        self,
        root: str,
        circular: bool = True,
        suffix: str = LLAVA_SUFFIX,
        n_per_category: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        super().__init__(root, n_per_category=n_per_category, seed=seed, limit=limit)
        self.circular, self.suffix = circular, suffix

    def layout_hint(self) -> str:
        return (
            "Expected MMBench's published TSV (e.g. MMBench_DEV_EN.tsv) with columns index, question, hint, A-D, "
            "answer, category, image (base64)."
        )

    def sampling_unit(self, sample: EvalSample) -> str:
        return str(sample.meta["question"])

    def _table(self):
        if self.root.is_file():
            return self.root
        found = sorted(self.root.glob("*.tsv"))
        if len(found) != 1:
            raise FileNotFoundError(
                f"{self.name}: expected one .tsv under {self.root}, found {[p.name for p in found]}. {self.layout_hint()}"
            )
        return found[0]

    def load_all(self) -> list[EvalSample]:
        table = self._table()
        csv.field_size_limit(sys.maxsize)  # images are base64 in a column
        with table.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        has_copies = any(int(self._index(r, table, i)) >= CIRCULAR_BASE for i, r in enumerate(rows))
        samples = []
        for i, row in enumerate(rows):
            where = f"{table} row {i + 1}"
            index = self._index(row, table, i)
            options = {k: row[k].strip() for k in LETTERS if (row.get(k) or "").strip() not in ("", "nan")}
            answer = (row.get("answer") or "").strip()
            if len(options) < 2 or answer not in options:
                raise ValueError(
                    f"{where}: needs at least two options and an answer among them; got options {sorted(options)}, "
                    f"answer {answer!r}. {self.layout_hint()}"
                )
            image = self._image(row, where)
            question = index % CIRCULAR_BASE
            rotations = range(len(options)) if self.circular and not has_copies else [0]
            for k in rotations:
                texts = list(options.values())
                texts = texts[k:] + texts[:k]
                rotated = dict(zip(LETTERS, texts, strict=False))
                letter = LETTERS[(list(options).index(answer) - k) % len(options)]
                copy = index // CIRCULAR_BASE if has_copies else k
                samples.append(
                    EvalSample(
                        id=f"{question}/{copy}",
                        benchmark=self.name,
                        prompt=self._prompt(row, rotated),
                        image=image,
                        judge_question=self.required(row, "question", where),
                        category=self.required(row, "category", where),
                        harmful=False,
                        reference=letter,
                        meta={"question": question, "copy": copy, "options": rotated},
                    )
                )
        return samples

    def _index(self, row: dict, table, i: int) -> int:
        try:
            return int(float(row["index"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{table} row {i + 1}: field 'index' must be an integer. {self.layout_hint()}"
            ) from err

    def _image(self, row: dict, where: str) -> bytes:
        value = (row.get("image") or "").strip()
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"{where}: field 'image' is not base64. {self.layout_hint()}") from err
        if not data:
            raise ValueError(f"{where}: field 'image' is empty. {self.layout_hint()}")
        return data

    def _prompt(self, row: dict, options: dict[str, str]) -> str:
        hint = (row.get("hint") or "").strip()
        lines = [f"Hint: {hint}"] if hint and hint != "nan" else []
        lines.append(row["question"].strip())
        lines += [f"{k}. {v}" for k, v in options.items()]
        if self.suffix:
            lines.append(self.suffix)
        return "\n".join(lines)

    def utility_metrics(self, samples: list[EvalSample], answers: list[str]) -> dict[str, float]:
        """Percent: ``acc`` (CircularEval: a question is right only when every copy is), ``vanilla_acc`` (the
        unrotated copy alone), ``<category>/acc`` (circular), and ``unparsed`` (answers naming no option; wrong)."""
        if len(samples) != len(answers):
            raise ValueError(f"{self.name}: {len(samples)} samples but {len(answers)} answers; they must pair up.")
        if not samples:
            return {}
        copies: dict[int, list[bool]] = defaultdict(list)
        first: dict[int, bool] = {}
        category: dict[int, str] = {}
        unparsed = 0
        for sample, answer in zip(samples, answers, strict=True):
            if "options" not in sample.meta or sample.reference is None:
                raise ValueError(
                    f"{self.name}: sample {sample.id!r} is not an MMBench sample (no options/answer)."
                )
            picked = parse_choice(answer, sample.meta["options"])
            unparsed += picked is None
            q = sample.meta["question"]
            copies[q].append(picked == sample.reference)
            category[q] = str(sample.category)
            if sample.meta["copy"] == 0:
                first[q] = picked == sample.reference
        right = {q: all(v) for q, v in copies.items()}
        metrics = {"acc": 100.0 * sum(right.values()) / len(right)}
        if first:
            metrics["vanilla_acc"] = 100.0 * sum(first.values()) / len(first)
        for name in sorted(set(category.values())):
            mine = [right[q] for q in right if category[q] == name]
            metrics[f"{name}/acc"] = 100.0 * sum(mine) / len(mine)
        metrics["unparsed"] = 100.0 * unparsed / len(answers)
        return metrics
