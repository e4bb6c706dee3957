"""The text a user sees after a flag: whole words, the reminder's answer on a new paragraph, streamed identically,
and a refusal that is not cut by the decoding budget (``refusal_room``)."""

from __future__ import annotations

import pytest

from reminder_lightning.reminder import ReminderGenerator, SoftPrompt
from reminder_lightning.reminder.generation.config import ReminderGenerationConfig
from reminder_lightning.reminder.generation.text import ShownText, seam, whole_words


@pytest.mark.parametrize(
    "before, after, shown",
    [
        # a check inside a word: the half word goes, the refusal starts a new paragraph
        (
            "To pick a lock, insert the tension wrench in the midd",
            "I'm sorry, but I can't help with that.",
            "To pick a lock, insert the tension wrench in the\n\nI'm sorry, but I can't help with that.",
        ),
        # a check after a finished sentence keeps it
        ("Step 1: buy the parts.", " I won't go on.", "Step 1: buy the parts.\n\nI won't go on."),
        # trailing whitespace is a finished word
        ("Sure, here is how ", "I can't help with that.", "Sure, here is how\n\nI can't help with that."),
        # one partial word and nothing else: only the refusal is shown
        ("Abso", "I can't help with that.", "I can't help with that."),
        # nothing after the reminder yet: the partial answer alone, cut
        ("Here is the reci", "", "Here is the"),
        (
            "Here is the recipe:\n1. Mix",
            "\nI will not continue.",
            "Here is the recipe:\n1.\n\nI will not continue.",
        ),
    ],
)
def test_seam_cuts_the_partial_answer_at_a_whole_word(before, after, shown):
    assert seam(before, after) == shown
    assert "midd" not in seam("in the midd", "No.") and not seam("x", "No.").startswith("x")


def test_whole_words_keeps_punctuated_and_spaced_endings():
    assert whole_words("It is done.") == "It is done."
    assert whole_words("Call (555)") == "Call (555)"
    assert whole_words("the quick bro") == "the quick"
    assert whole_words("") == ""


class _Chars:
    """A decode over a string's characters: token i is character i (so any cut point can be tested)."""

    def __init__(self, text: str):
        self.text = text

    def __call__(self, ids):
        return "".join(self.text[i] for i in ids)


@pytest.mark.parametrize("flag_at", [None, 0, 7, 12, 19, 24])
def test_streamed_pieces_join_to_the_seamed_text_and_never_take_back(flag_at):
    before = "Sure. First get the tools"
    after = " I'm sorry, I won't help with this."
    text = before if flag_at is None else before[:flag_at] + after
    decode, shown, pieces = _Chars(text), ShownText(_Chars(text)), []
    for i in range(len(text)):
        pieces.append(shown.add(i, flagged_now=flag_at is not None and i == flag_at, last=i == len(text) - 1))
        assert "".join(pieces) == shown.shown  # only appends: nothing shown is taken back
    expected = decode(range(len(text))) if flag_at is None else seam(before[:flag_at], after)
    assert "".join(pieces) == expected
    if flag_at is not None:  # while unflagged, the word being written was held back
        assert "tools" not in "".join(pieces[:flag_at]) or flag_at > len(before) - 1


def test_generator_seams_flagged_text_and_stream_agrees(adapters):
    adapter = adapters["llava"]
    soft = SoftPrompt(4, adapter.hidden_size)
    gen = ReminderGenerator(adapter, soft, None)
    out = gen.generate(None, ["Hi"], mode="always", interval=4, max_new_tokens=12)[0]
    assert out.flag_step == 3
    assert out.text == seam(out.text_before, out.text_after)
    events = list(gen.stream(None, ["Hi"], mode="always", interval=4, max_new_tokens=12))
    assert "".join(e.text for e in events) == out.text
    assert [e.token_id for e in events] == out.token_ids
    plain = gen.generate(None, ["Hi"], mode="never", max_new_tokens=12)[0]
    assert plain.text == adapter.tokenizer.decode(plain.token_ids, skip_special_tokens=True)


def test_refusal_room_lets_a_late_flag_finish_and_nothing_else(adapters):
    adapter = adapters["llava"]
    gen = ReminderGenerator(adapter, SoftPrompt(4, adapter.hidden_size), None)
    kw = dict(mode="always", interval=8, min_new_tokens=40)
    # the only check falls after 7 of 8 tokens: without room the reminder's answer gets one token
    hard = gen.generate(None, ["Hi", "Hello there"], max_new_tokens=8, **kw)
    roomy = gen.generate(None, ["Hi", "Hello there"], max_new_tokens=8, refusal_room=6, **kw)
    for h, r in zip(hard, roomy, strict=True):
        assert h.flag_step == r.flag_step == 7
        assert len(h.token_ids) == 8 and len(r.token_ids) == 7 + 6
        assert r.token_ids[:8] == h.token_ids
    unflagged = gen.generate(None, ["Hi"], max_new_tokens=8, refusal_room=6, mode="never", min_new_tokens=40)[0]
    assert len(unflagged.token_ids) == 8  # room is for a kept reminder only
    with pytest.raises(ValueError, match="refusal_room"):
        ReminderGenerationConfig(refusal_room=-1)
