"""Settings of one generation call, what it returns per sample, and what :meth:`ReminderGenerator.stream` yields."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from reminder_lightning.reminder.schedule import GateMode, ReminderSchedule

SCHEDULE_FIELDS = tuple(f.name for f in fields(ReminderSchedule))  # generation settings that go to the schedule


@dataclass(frozen=True)
class DecodingSettings:
    """How a model decodes: what every defence shares, recorded with every number (it moves ASR).

    Args:
        max_new_tokens: Tokens to generate at most (reminder vectors do not count).
        do_sample: Sample (True) or greedy (False).
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass (1.0 = off).
        top_k: Top-k sampling (0 = off).
        repetition_penalty: transformers' repetition penalty (1.0 = off).
        seed: Seed of the sampling generator (None: torch's global RNG).
    """

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def as_dict(self) -> dict[str, Any]:
        """The decoding fields only (also on a :class:`ReminderGenerationConfig`)."""
        return {f.name: getattr(self, f.name) for f in fields(DecodingSettings)}


@dataclass(frozen=True)
class ReminderGenerationConfig(DecodingSettings):
    """:class:`DecodingSettings` plus what the reminder's generation loop needs: its :class:`ReminderSchedule`.

    Args:
        min_new_tokens: EOS is suppressed until this many tokens are generated (benchmarks use it).
        return_text: ``full`` (everything the user would see) or ``after_reminder`` (the text after the
            kept reminder for flagged samples, as the reference code returns).
        output_scores: Keep the processed next-token scores of every step in the outputs.
        refusal_room: Tokens a sample may still generate after its kept reminder, past ``max_new_tokens`` if need
            be (0: the budget is hard). With a short evaluation budget, a reminder kept at the last check would
            otherwise have one token to answer with, and its answer would be scored on the cut.
        schedule: When the reminder is tried and kept (interval, threshold, mode).

    The decoding fields are :class:`DecodingSettings`' (``seed`` defaults to None here: torch's global RNG).
    """

    seed: int | None = None
    min_new_tokens: int = 0
    return_text: Literal["full", "after_reminder"] = "full"
    output_scores: bool = False
    refusal_room: int = 0
    schedule: ReminderSchedule = field(default_factory=ReminderSchedule)

    def __post_init__(self):
        super().__post_init__()
        if self.return_text not in ("full", "after_reminder"):
            raise ValueError(f"return_text must be 'full' or 'after_reminder', got {self.return_text!r}")
        if isinstance(self.refusal_room, bool) or not isinstance(self.refusal_room, int) or self.refusal_room < 0:
            raise ValueError(f"refusal_room must be an integer >= 0, got {self.refusal_room!r}")
        if not isinstance(self.schedule, ReminderSchedule):
            raise TypeError(f"schedule must be a ReminderSchedule, got {type(self.schedule).__name__}")

    @property
    def mode(self) -> GateMode:
        return self.schedule.mode

    def updated(self, **overrides: Any) -> ReminderGenerationConfig:
        """A copy with ``overrides``: decoding fields, or the schedule's (``interval``, ``threshold``, ``mode``,
        ``keep_checking_after_flag``, ``jitter``, ``fallback_margin``, ``check_at_end``), which go into the schedule."""
        names = {f.name for f in fields(self)}
        unknown = set(overrides) - names - set(SCHEDULE_FIELDS)
        if unknown:
            raise TypeError(
                f"Unknown generation setting(s) {sorted(unknown)}; decoding: {sorted(names - {'schedule'})}, "
                f"schedule: {list(SCHEDULE_FIELDS)}."
            )
        schedule = overrides.pop("schedule", self.schedule)
        schedule_changes = {k: overrides.pop(k) for k in SCHEDULE_FIELDS if k in overrides}
        if schedule_changes:
            schedule = schedule.replace(**schedule_changes)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return ReminderGenerationConfig(**{**values, **overrides, "schedule": schedule})

    def logits_processors(self):
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.do_sample:
            if self.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k > 0:
                procs.append(TopKLogitsWarper(self.top_k))
            if self.top_p < 1.0:
                procs.append(TopPLogitsWarper(self.top_p))
        return procs


@dataclass
class ReminderOutput:
    """One sample's result and trace.

    Attributes:
        text: What is returned (see ``return_text``). For a flagged sample with ``full``:
            :func:`~reminder_lightning.reminder.generation.text.seam` of ``text_before`` and ``text_after`` (the
            partial answer cut at its last whole word, the continuation on a new paragraph).
        token_ids: Generated token ids (reminder vectors are not tokens and are not included).
        flagged: Whether a reminder was kept.
        flag_step: Tokens generated when the first reminder was kept (None if never).
        checks: ``(tokens generated, P(safe))`` for every check (P(safe) is NaN without a probe).
        text_before: Text generated before the first kept reminder (all text if not flagged).
        text_after: Text generated after it ("" if not flagged).
        finish_reason: ``eos`` or ``length``.
        scores: Processed next-token scores ``(vocab,)`` per generated token, with ``output_scores``.
    """

    text: str
    token_ids: list[int]
    flagged: bool = False
    flag_step: int | None = None
    checks: list[tuple[int, float]] = field(default_factory=list)
    text_before: str = ""
    text_after: str = ""
    finish_reason: str = "length"
    scores: list[torch.Tensor] | None = None


@dataclass
class StepEvent:
    """Emitted by :meth:`ReminderGenerator.stream` after every generated token of every live sample."""

    sample: int
    token_id: int
    text: str  # newly decodable text (may be "" while a multi-byte character is incomplete)
    flagged_now: bool = False
