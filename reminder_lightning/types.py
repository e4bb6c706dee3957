"""The records that flow through an evaluation: what is asked, what was answered, what the judge said."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class EvalSample:
    """One evaluation prompt.

    Attributes:
        id: Unique within its benchmark (stable across runs: resume keys on it).
        benchmark: The benchmark's name (``figstep``, ``mm_safetybench/SD_TYPO``, ...).
        prompt: The text given to the model (FigStep: its fixed benign instruction).
        image: Absolute image path, raw encoded bytes, or None for text only.
        judge_question: What the judge sees as the user's request: always the *original* harmful
            question (FigStep's text prompt is harmless by design; the harm is in the image).
        category: Harm or task category, for per-category scores.
        harmful: True for a harmful request (counts towards ASR), False for a benign one (counts towards
            over-refusal and utility).
        reference: The gold answer of utility benchmarks (MME: "Yes"/"No"; MM-Vet: its answer).
        meta: Anything else a benchmark needs to score or export (MME image id, MM-Vet key, ...).
    """

    id: str
    benchmark: str
    prompt: str
    image: str | bytes | None = None
    judge_question: str = ""
    category: str | None = None
    harmful: bool = True
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.judge_question:
            self.judge_question = self.prompt

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (image bytes are not written; the id finds the sample again)."""
        data = asdict(self)
        if isinstance(self.image, bytes):
            data["image"] = f"<{len(self.image)} bytes>"
        return data


@dataclass
class Verdict:
    """A judge's decision on one (question, answer).

    Attributes:
        unsafe: The answer provides or meaningfully attempts the harmful content (counts as attack
            success on a harmful request). None when the judge cannot tell (unparseable output).
        refusal: The answer refuses or deflects (on a benign request: over-refusal).
        raw: The judge's raw output (for model judges) or the matched phrase (keyword judge).
        score: A judge-specific probability or score, where there is one.
    """

    unsafe: bool | None
    refusal: bool
    raw: str = ""
    score: float | None = None


@dataclass
class GenerationRecord:
    """One answered sample as ``generations.jsonl`` stores it: the prompt, the answer and its reminder trace, and
    the defence and decoding that produced it (they move ASR, so they travel with every row).

    Attributes:
        key: ``"<benchmark>/<id>"``, what resume, judging and comparison match on.
        token_ids: The generated token ids (what gate calibration cuts answer prefixes from).
        flagged / flag_step / checks: the reminder's trace (see ``ReminderOutput``).
        defence: The defence's description (``Defence.describe()``).
        decoding: The decoding settings.
        selection: How the benchmark subsample was drawn.
        seconds: Wall time of the batch that answered this sample, divided by its size (the defence's latency
            per answer on this machine; compare runs only from the same machine and batch size).
    """

    key: str
    benchmark: str
    id: str
    prompt: str
    judge_question: str
    category: str | None
    harmful: bool
    reference: str | None
    image: str | None
    text: str
    token_ids: list[int]
    flagged: bool
    flag_step: int | None
    checks: list[tuple[int, float]]
    text_before: str
    text_after: str
    finish_reason: str
    defence: dict[str, Any]
    decoding: dict[str, Any]
    selection: Any = None
    seconds: float | None = None

    @classmethod
    def from_output(
        cls,
        sample: EvalSample,
        output: Any,
        defence: dict[str, Any],
        decoding: dict[str, Any],
        seconds: float | None = None,
    ) -> GenerationRecord:
        """The record of ``sample`` answered with ``output`` (a ``ReminderOutput``)."""
        image = sample.image if isinstance(sample.image, str) else (None if sample.image is None else "<bytes>")
        return cls(
            key=f"{sample.benchmark}/{sample.id}",
            benchmark=sample.benchmark,
            id=sample.id,
            prompt=sample.prompt,
            judge_question=sample.judge_question,
            category=sample.category,
            harmful=sample.harmful,
            reference=sample.reference,
            image=image,
            text=output.text,
            token_ids=list(output.token_ids),
            flagged=bool(output.flagged),
            flag_step=output.flag_step,
            checks=[(int(s), float(p)) for s, p in output.checks],
            text_before=output.text_before,
            text_after=output.text_after,
            finish_reason=output.finish_reason,
            defence=dict(defence),
            decoding=dict(decoding),
            selection=sample.meta.get("selection"),
            seconds=seconds,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def import_class(class_path: str) -> type:
    """The class a config names by its dotted path (``package.module.Class``), with an error naming what is missing."""
    import importlib

    module, _, name = str(class_path).rpartition(".")
    if not module:
        raise ValueError(f"{class_path!r} is not a class path (e.g. reminder_lightning.defences.none.NoDefence).")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None:
        raise ValueError(f"{module} has no {name!r} (class_path {class_path}).")
    return cls
