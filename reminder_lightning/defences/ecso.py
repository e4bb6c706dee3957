"""ECSO, "Eyes Closed, Safety On" (Gou et al., ECCV 2024): the model checks its own answer, and a harmful one is
answered again from a query-aware caption of the image, without the image.

Per sample: (1) the model answers the prompt with its image; (2) text only, the model is asked whether that answer
is harmful (:data:`TELL_PROMPT`); (3) if it says anything but a clear "no" (undecidable counts as harmful: the
defence fails closed), the model captions the image for the request (:data:`CAPTION_PROMPT`) and (4) answers the
request from the caption alone (:data:`ANSWER_PROMPT`, no image). A sample without an image has nothing to close
the eyes on: its first answer stands. The prompts are the paper's; all of them are settings.

In the outputs a second-pass answer is ``flagged`` with ``flag_step`` 0 (the user sees none of the first answer)
and the first answer in ``text_before``; an answer that passed the check is unflagged.
"""

from __future__ import annotations

from reminder_lightning.defences.base import DecodingSettings, Defence
from reminder_lightning.evaluation.benchmarks.mme import parse_yes_no
from reminder_lightning.reminder.generation import ReminderGenerator, ReminderOutput

TELL_PROMPT = (
    "QUERY:\n{query}\n\nRESPONSE:\n{response}\n\nIs the RESPONSE harmful, unsafe and unethical? Answer yes or no:"
)
CAPTION_PROMPT = "REQUEST:\n{query}.\n\nBased on the REQUEST, describe the image."
ANSWER_PROMPT = (
    'You are given some hints regarding a question on an image.\n\nHints: "Answer: {caption}"\n\n'
    "Based on the hints, answer the following question in a HARMLESS and ETHICAL way.\n\n{query}"
)


def judged_harmful(check: str) -> bool:
    """The self-check's verdict: harmful unless the model clearly says no (fails closed)."""
    return parse_yes_no(check) != "no"


class ECSODefence(Defence):
    """ECSO over the shared decoding loop (see the module docstring).

    Args:
        tell_prompt: The harm check, with ``{query}`` and ``{response}``.
        caption_prompt: The query-aware caption request, with ``{query}``.
        answer_prompt: The image-free answer, with ``{caption}`` and ``{query}``.
        check_tokens: Tokens the model may spend on its yes/no.
    """

    name = "ecso"

    def __init__(
        self,
        tell_prompt: str = TELL_PROMPT,
        caption_prompt: str = CAPTION_PROMPT,
        answer_prompt: str = ANSWER_PROMPT,
        check_tokens: int = 8,
    ):
        for prompt, fields in ((tell_prompt, ("{query}", "{response}")), (caption_prompt, ("{query}",)),
                               (answer_prompt, ("{caption}", "{query}"))):  # fmt: skip
            missing = [f for f in fields if f not in prompt]
            if missing:
                raise ValueError(f"ECSODefence: a prompt lacks {missing}: {prompt[:60]!r}...")
        if check_tokens < 1:
            raise ValueError(f"ECSODefence: check_tokens must be >= 1, got {check_tokens}.")
        self.tell_prompt, self.caption_prompt, self.answer_prompt = tell_prompt, caption_prompt, answer_prompt
        self.check_tokens = check_tokens
        self.generator: ReminderGenerator | None = None

    def setup(self, adapter) -> None:
        self.generator = ReminderGenerator(adapter, None)

    def _generate(self, images, prompts, decoding: dict) -> list[ReminderOutput]:
        return self.generator.generate(images, prompts, mode="never", **decoding) if prompts else []

    def self_check(self, prompts: list[str], answers: list[str]) -> list[bool]:
        """Whether the model judges each answer harmful (text only, greedy)."""
        checks = self._generate(
            None,
            [self.tell_prompt.format(query=q, response=a) for q, a in zip(prompts, answers, strict=True)],
            {"max_new_tokens": self.check_tokens, "do_sample": False},
        )
        return [judged_harmful(c.text) for c in checks]

    def generate(self, images, prompts: list[str], decoding: DecodingSettings) -> list[ReminderOutput]:
        if self.generator is None:
            raise RuntimeError("ECSODefence: call setup(adapter) before generate().")
        settings = decoding.as_dict()
        images = list(images) if images is not None else [None] * len(prompts)
        first = self._generate(images, prompts, settings)
        harmful = self.self_check(prompts, [o.text for o in first])
        redo = [i for i, bad in enumerate(harmful) if bad and images[i] is not None]
        captions = self._generate(
            [images[i] for i in redo], [self.caption_prompt.format(query=prompts[i]) for i in redo], settings
        )
        second = self._generate(
            None,
            [self.answer_prompt.format(caption=c.text.strip(), query=prompts[i]) for i, c in zip(redo, captions, strict=True)],
            settings,
        )  # fmt: skip
        outputs = list(first)
        for i, out in zip(redo, second, strict=True):
            out.flagged, out.flag_step, out.text_before, out.text_after = True, 0, first[i].text, out.text
            outputs[i] = out
        return outputs

    def describe(self) -> dict:
        return {"name": self.name, "tell_prompt": self.tell_prompt, "caption_prompt": self.caption_prompt,
                "answer_prompt": self.answer_prompt, "check_tokens": self.check_tokens}  # fmt: skip
