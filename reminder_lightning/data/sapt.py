"""Safety-Activation Prompt Tuning (SAPT): example construction and loss.

An example is ``chat prompt (with image) + prefix + reminder + target``:

* harmful record: ``prefix`` is a random cut of the *harmful* answer, ``target`` the *safe* answer;
* benign record: ``prefix`` is a random cut of the helpful answer, ``target`` the rest of it.

The prefix is empty with probability ``p_empty_prefix``; otherwise (``cut="word"``, the reference) a random
character length in ``[min_prefix_chars, len(answer)]`` is cut back to the last space, or (``cut="check_points"``)
the answer's tokens are cut where the generator checks: after ``interval - 1``, ``2 * interval - 1``, ... tokens,
mid-word if that is where the check falls, so training sees the prefixes the reminder meets at inference. Labels are -100 up to and including
the last reminder token, so the language-model loss covers the target (and its end-of-answer token)
only. The loss is ``LM cross-entropy + cls_weight * BCE(probe(h at last reminder token), is_safe)``
when a probe is given, the LM term alone otherwise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import torch

from reminder_lightning.data.records import Record
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.vlm.adapter import PromptBuilder

IGNORE_INDEX = -100


@dataclass
class SaptSettings:
    """Numbers of the SAPT objective (reference defaults).

    Args:
        p_empty_prefix: Probability that the assistant prefix is empty.
        min_prefix_chars: Shortest non-empty prefix cut, in characters.
        max_length: Longest token sequence. Image and prompt tokens are never cut: the target is cut
            from its end first (down to ``min_target_tokens``), then the prefix from its end.
        min_target_tokens: Target tokens kept when truncating.
        cut: ``word`` (reference: a random character length cut back to a space) or ``check_points`` (a
            token count where the generator checks: the check points of the model's ``ReminderSchedule``).
    """

    p_empty_prefix: float = 1 / 3
    min_prefix_chars: int = 20
    max_length: int = 1024
    min_target_tokens: int = 8
    cut: Literal["word", "check_points"] = "word"

    def __post_init__(self):
        if not 0.0 <= self.p_empty_prefix <= 1.0:
            raise ValueError(f"p_empty_prefix must be in [0, 1], got {self.p_empty_prefix}")
        if self.min_prefix_chars < 1 or self.max_length < 2 or self.min_target_tokens < 1:
            raise ValueError("min_prefix_chars, min_target_tokens must be >= 1 and max_length >= 2")
        if self.cut not in ("word", "check_points"):
            raise ValueError(f"cut must be 'word' or 'check_points', got {self.cut!r}")


def cut_prefix(answer: str, rng: random.Random, p_empty: float = 1 / 3, min_chars: int = 20) -> str:
    """A random prefix of ``answer`` ending at a word boundary (may be empty)."""
    if rng.random() < p_empty or len(answer) < min_chars:
        return ""
    length = rng.randint(min_chars, len(answer))
    cut = answer[:length]
    space = cut.rfind(" ")
    return cut[:space] if space > 0 else ""


def cut_at_check_points(ids: list[int], rng: random.Random, p_empty: float, schedule: ReminderSchedule) -> int:
    """How many of the answer's tokens ``ids`` to keep: 0 with probability ``p_empty``, else one of the schedule's
    check points (``interval - 1, 2 * interval - 1, ...``, each leaving at least one token; drawn per window with
    ``rng`` when the schedule has ``jitter``)."""
    points = schedule.check_points(len(ids), rng)
    if rng.random() < p_empty or not points:
        return 0
    return rng.choice(points)


Text = str | list[int]


def prefix_and_target(
    record: Record,
    rng: random.Random,
    settings: SaptSettings,
    builder: PromptBuilder | None = None,
    schedule: ReminderSchedule | None = None,
) -> tuple[Text, Text]:
    """The (prefix, target) pair of one SAPT example drawn from ``record``: strings, or token ids where
    ``settings.cut == "check_points"`` (which needs ``builder`` to tokenise the answer and the ``schedule``)."""
    if not record.is_safe and not record.harmful_answer:
        raise ValueError(
            f"Harmful record {record.id!r} from {record.source} has no harmful_answer to cut prefixes from."
        )
    if not record.safe_answer:
        raise ValueError(
            f"Record {record.id!r} from {record.source} has no safe_answer to train towards (an `Instructions` "
            "source holds questions only: use it for `probe`, and records with answers for `fit`)."
        )
    answer = record.safe_answer if record.is_safe else record.harmful_answer
    if settings.cut == "check_points":
        if builder is None:
            raise ValueError("SaptSettings(cut='check_points') cuts tokens: pass the prompt builder.")
        ids = builder.encode_text(answer)
        k = cut_at_check_points(ids, rng, settings.p_empty_prefix, schedule or ReminderSchedule())
        return ids[:k], (ids[k:] if record.is_safe else record.safe_answer)
    prefix = cut_prefix(answer, rng, settings.p_empty_prefix, settings.min_prefix_chars)
    return prefix, (answer[len(prefix) :] if record.is_safe else record.safe_answer)


def encode_example(
    builder: PromptBuilder,
    placeholder_ids: list[int],
    question: str,
    image,
    prefix: Text,
    target: Text,
    is_safe: bool,
    settings: SaptSettings,
    record_id: str = "?",
) -> dict[str, torch.Tensor]:
    """Tokenise one SAPT example (batch dimension 1).

    Returns the processor's tensors extended with prefix, reminder placeholders and target, plus
    ``labels`` ``(1, L)``, ``reminder_index`` ``(1,)`` (position of the last reminder token) and
    ``is_safe`` ``(1,)``. ``prefix`` and ``target`` are text or token ids.
    """
    encoded = builder.encode_prompt(question, image)
    prompt_len = int(encoded["input_ids"].shape[1])
    prefix_ids = builder.encode_text(prefix) if isinstance(prefix, str) else list(prefix)
    target_ids = (
        builder.encode_text(target) if isinstance(target, str) else list(target)
    ) + builder.end_of_answer_ids()
    n = len(placeholder_ids)
    budget = settings.max_length - prompt_len - n
    if budget < 1:
        raise ValueError(
            f"Record {record_id!r}: the prompt alone is {prompt_len} tokens (+{n} reminder tokens), over max_length="
            f"{settings.max_length}. Image and prompt tokens are never cut: raise max_length or shorten the question."
        )
    if len(prefix_ids) + len(target_ids) > budget:
        keep_target = max(budget - len(prefix_ids), min(len(target_ids), settings.min_target_tokens))
        target_ids = target_ids[: min(keep_target, budget)]
        prefix_ids = prefix_ids[: max(budget - len(target_ids), 0)]
    encoded = builder.append_tokens(encoded, prefix_ids + placeholder_ids + target_ids)
    reminder_index = prompt_len + len(prefix_ids) + n - 1
    labels = torch.full_like(encoded["input_ids"], IGNORE_INDEX)
    labels[0, reminder_index + 1 :] = torch.tensor(target_ids, dtype=labels.dtype)
    encoded["labels"] = labels
    encoded["reminder_index"] = torch.tensor([reminder_index])
    encoded["is_safe"] = torch.tensor([float(is_safe)])
    return encoded
