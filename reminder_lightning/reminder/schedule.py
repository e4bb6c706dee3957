"""ReminderSchedule: the one home of the method's settings (interval, threshold, gate mode) and its check points.

The reminder is tried after ``interval - 1``, ``2 * interval - 1``, ... generated tokens (15, 31, 47, ... with the
reference's 16). Training cuts prefixes there (``data.sapt.cut: check_points``), gated generation checks there,
gate calibration reads hidden states there, and the adaptive attack attacks there: all of them ask this class,
so the schedule is written once.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any


class GateMode(str, Enum):
    """What a check does with the reminder.

    * ``gated``: the probe decides; the reminder is kept when P(safe) < threshold.
    * ``always``: every check keeps the reminder (no probe needed).
    * ``never``: no checks at all (undefended decoding through the same loop).
    """

    # Lower-case member names: YAML and the command line spell them as users do (``mode: gated``).
    gated = "gated"
    always = "always"
    never = "never"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ReminderSchedule:
    """When the reminder is tried and when it is kept.

    Args:
        interval: Check after every ``interval`` generated tokens (after ``interval - 1``, ``2 * interval - 1``, ...;
            reference: 16).
        threshold: Keep the reminder when P(safe) < threshold (``gated``; reference: 0.2). A finite value in [0, 1].
        mode: ``gated``, ``always`` or ``never`` (see :class:`GateMode`).
        keep_checking_after_flag: Keep checking (and possibly keep more reminders) after the first kept one.
        jitter: Randomised check positions: one check in every window of ``interval`` tokens, at a position drawn
            per answer (uniform over the window) instead of its last token, so an attacker cannot aim at a known
            step. Off by default (the reference's fixed schedule).
        fallback_margin: Keep the reminder also where the gate is unsure: P(safe) above the threshold by less than
            this many log-odds (0: off). The cost shows as benign answers flagged; see :attr:`keep_below`.
        check_at_end: One more check where an answer ends (the model picks its end-of-answer token) after tokens no
            check has read: an answer shorter than the first check point, or the tail after the last one, is
            otherwise never looked at. A kept reminder replaces the end and the answer goes on after it. Off by
            default (the reference's schedule); see :meth:`end_point`.
    """

    interval: int = 16
    threshold: float = 0.2
    mode: GateMode = GateMode.gated
    keep_checking_after_flag: bool = False
    jitter: bool = False
    fallback_margin: float = 0.0
    check_at_end: bool = False

    def __post_init__(self):
        try:
            object.__setattr__(self, "mode", GateMode(self.mode))
        except ValueError as err:
            raise ValueError(
                f"ReminderSchedule.mode must be one of {[m.value for m in GateMode]}, got {self.mode!r}."
            ) from err
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"ReminderSchedule.interval must be an integer >= 1, got {self.interval!r}.")
        threshold = float(self.threshold)
        if not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
            raise ValueError(
                f"ReminderSchedule.threshold must be a finite number in [0, 1] (P(safe) below it is flagged), "
                f"got {self.threshold!r}."
            )
        object.__setattr__(self, "threshold", threshold)
        margin = float(self.fallback_margin)
        if not math.isfinite(margin) or margin < 0:
            raise ValueError(
                "ReminderSchedule.fallback_margin must be a finite number >= 0 (log-odds), "
                f"got {self.fallback_margin!r}."
            )
        object.__setattr__(self, "fallback_margin", margin)

    @property
    def keep_below(self) -> float:
        """The P(safe) under which a check keeps the reminder: the threshold, moved up by ``fallback_margin``
        log-odds (``sigmoid(logit(threshold) + margin)``; a threshold of 0 or 1 stays where it is)."""
        if self.fallback_margin == 0 or self.threshold in (0.0, 1.0):
            return self.threshold
        logit = math.log(self.threshold / (1 - self.threshold)) + self.fallback_margin
        return 1 / (1 + math.exp(-logit))

    def is_check(self, generated: int) -> bool:
        """Whether a check follows the ``generated``-th token (1-based count) on the fixed schedule."""
        if self.jitter:
            raise ValueError("With jitter, check positions are drawn per answer: use check_points(length, rng).")
        return self.mode is not GateMode.never and generated >= 1 and (generated + 1) % self.interval == 0

    def check_points(self, length: int, rng: random.Random | None = None) -> list[int]:
        """Token counts ``c < length`` after which the reminder is tried (``c >= 1``): where a check inside an
        answer of ``length`` tokens leaves at least one token after it. Independent of ``mode``.

        Fixed: ``interval - 1``, ``2 * interval - 1``, ... With ``jitter``: one point per window ``[k * interval,
        (k + 1) * interval)`` drawn with ``rng`` (required), the same windows and the same number of checks."""
        if not self.jitter:
            return [c for c in range(self.interval - 1, length, self.interval) if c >= 1]
        if rng is None:
            raise ValueError("ReminderSchedule(jitter=True) draws its check points: pass a random.Random (rng).")
        points = []
        for start in range(0, length, self.interval):
            low, high = max(1, start), start + self.interval - 1
            if low <= high:
                c = rng.randint(low, high)
                if c < length:
                    points.append(c)
        return points

    def end_point(self, answer_tokens: int, points: list[int]) -> int | None:
        """With ``check_at_end``, the check an answer that *ended* after ``answer_tokens`` tokens gets there (its
        end-of-answer token not counted), given its other check ``points``: ``answer_tokens``, unless it is 0 or
        the last point already reads there. None when off or in mode ``never``. An answer cut by the decoding
        budget did not end and gets no end check."""
        if not self.check_at_end or self.mode is GateMode.never or answer_tokens < 1:
            return None
        return None if points and points[-1] == answer_tokens else answer_tokens

    def replace(self, **changes: Any) -> ReminderSchedule:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    def to_metadata(self) -> dict[str, str]:
        """String metadata for a safetensors artifact."""
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], **overrides: Any) -> ReminderSchedule:
        """Read the fields an artifact stores (missing ones take the defaults), then apply ``overrides``."""
        values: dict[str, Any] = {}
        for f in fields(cls):  # every field, by its type: a new field needs no code here
            if f.name not in metadata:
                continue
            if f.type == "bool":
                flag = metadata[f.name]
                if flag not in ("True", "False"):
                    raise ValueError(f"metadata {f.name!r} must be 'True' or 'False', got {flag!r}.")
                values[f.name] = flag == "True"
            elif f.type in ("int", "float"):
                values[f.name] = _parse(metadata, f.name, int if f.type == "int" else float)
            else:  # mode: checked by __post_init__
                values[f.name] = metadata[f.name]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse(metadata: dict[str, str], key: str, kind: type) -> Any:
    try:
        return kind(metadata[key])
    except (TypeError, ValueError) as err:
        raise ValueError(f"metadata {key!r} must be {kind.__name__}, got {metadata[key]!r}.") from err
