"""The text a user sees when the reminder takes over: the partial answer ends on a whole word, the reminder's
continuation starts a new paragraph.

A check falls after a fixed number of tokens, so it often lands inside a word ("... in the midd"), and the
continuation the reminder brings ("I'm sorry, ...") would otherwise be glued to it ("in the middI'm sorry").
:func:`seam` cuts the partial answer back to its last complete word (a word is complete when whitespace follows it
or it ends in punctuation), drops trailing whitespace, and puts the continuation on a new paragraph.
:class:`ShownText` streams the same text token by token: while no flag has come, the word being written is held
back until whitespace ends it, so nothing shown ever has to be taken back; the streamed pieces join to exactly
:func:`seam`'s text.

Token counts (``flag_step``, leakage) are not changed by the seam: they count what the model generated.
"""

from __future__ import annotations

SEPARATOR = "\n\n"
#: A partial answer ending in one of these ends on a complete word.
WORD_END = ".,;:!?)]}\"'*`"


def whole_words(text: str) -> str:
    """``text`` up to its last complete word, trailing whitespace dropped ("" if no word is complete)."""
    if not text or text[-1].isspace() or text[-1] in WORD_END:
        return text.rstrip()
    return _before_last_word(text)


def seam(before: str, after: str) -> str:
    """What the user sees: ``before`` (the answer until the reminder was kept) cut at its last complete word, then
    ``after`` (what followed the reminder) on a new paragraph."""
    head, tail = whole_words(before), after.lstrip()
    if not tail:
        return head
    return f"{head}{SEPARATOR}{tail}" if head else tail


def _before_last_word(text: str) -> str:
    """``text`` without its last (possibly partial) word and the whitespace before it."""
    cut = max(text.rfind(c) for c in (" ", "\n", "\t"))
    return text[:cut].rstrip() if cut > 0 else ""


class ShownText:
    """One sample's streamed text: feed its tokens, get the newly showable text back.

    Args:
        decode: Token ids -> text (the tokenizer's decode, special tokens skipped).
    """

    def __init__(self, decode):
        self.decode = decode
        self.before: list[int] = []
        self.after: list[int] = []
        self.flagged = False
        self.shown = ""

    def add(self, token_id: int, flagged_now: bool = False, last: bool = False) -> str:
        """Take the next generated token (``flagged_now``: the first one after the kept reminder; ``last``: the
        sample ends with it) and return the text that can be shown now."""
        self.flagged = self.flagged or flagged_now
        (self.after if self.flagged else self.before).append(token_id)
        before = self.decode(self.before)
        if self.flagged:
            target = seam(before, self.decode(self.after))
        elif last:
            target = before
        else:
            target = _before_last_word(before)  # the word being written may still be cut by a flag
        if target.endswith("\ufffd") and not last:  # an incomplete multi-byte character: wait for the rest
            return ""
        new = target[len(self.shown) :]
        self.shown = target
        return new
