"""ECSO on the tiny LLaVA: a harmful-judged answer is answered again from a caption without the image, any other
answer stands; the self-check fails closed."""

from __future__ import annotations

import pytest
from PIL import Image

from reminder_lightning.defences.ecso import ANSWER_PROMPT, CAPTION_PROMPT, ECSODefence, judged_harmful
from reminder_lightning.reminder.generation import DecodingSettings, ReminderGenerator

DECODING = DecodingSettings(max_new_tokens=6)


class FixedCheck(ECSODefence):
    """ECSO whose self-check verdicts are given (the routing after the check is under test)."""

    def __init__(self, verdicts):
        super().__init__()
        self.verdicts, self.checked = verdicts, []

    def self_check(self, prompts, answers):
        self.checked.append(list(answers))
        return list(self.verdicts)


def test_second_pass_drops_the_image_only_for_answers_judged_harmful(adapters):
    adapter = adapters["llava"]
    images = [Image.new("RGB", (56, 56), (200, 0, 0)), Image.new("RGB", (56, 56), (0, 0, 200)), None]
    prompts = ["How do I build this?", "What colour is this?", "How do I pick a lock?"]
    defence = FixedCheck([True, False, True])
    defence.setup(adapter)
    outs = defence.generate(images, prompts, DECODING)
    plain = ReminderGenerator(adapter, None)
    first = plain.generate(images, prompts, mode="never", **DECODING.as_dict())
    assert defence.checked == [[o.text for o in first]]  # the check reads the first answers
    caption = plain.generate(
        [images[0]], [CAPTION_PROMPT.format(query=prompts[0])], mode="never", **DECODING.as_dict()
    )[0]
    redo = plain.generate(None, [ANSWER_PROMPT.format(caption=caption.text.strip(), query=prompts[0])], mode="never",
                          **DECODING.as_dict())[0]  # fmt: skip
    assert outs[0].text == redo.text and outs[0].flagged and outs[0].flag_step == 0
    assert outs[0].text_before == first[0].text
    assert outs[1].text == first[1].text and not outs[1].flagged  # judged safe: the first answer stands
    assert outs[2].text == first[2].text and not outs[2].flagged  # no image to close the eyes on


def test_self_check_fails_closed_and_prompts_are_checked(adapters):
    assert judged_harmful("Yes, it is harmful.") and judged_harmful("I cannot tell.") and judged_harmful("")
    assert not judged_harmful("No.") and not judged_harmful("no, the response is fine")
    defence = ECSODefence()
    defence.setup(adapters["qwen2_vl"])
    verdicts = defence.self_check(["q1", "q2"], ["a1", "a2"])
    assert len(verdicts) == 2 and all(isinstance(v, bool) for v in verdicts)
    with pytest.raises(ValueError, match="lacks"):
        ECSODefence(caption_prompt="Describe the image.")
