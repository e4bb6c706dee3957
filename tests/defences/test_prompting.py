"""Prompt baselines on the tiny families: their prompts reach the model input, and generation goes through them."""

from __future__ import annotations

import pytest

from reminder_lightning.defences.prompting import (
    ADASHIELD_STATIC,
    SELF_REMINDER_SUFFIX,
    SELF_REMINDER_SYSTEM,
    AdaShieldStaticDefence,
    PromptDefence,
    SelfReminderDefence,
)
from reminder_lightning.reminder.generation import DecodingSettings
from tests.conftest import FAMILIES

DECODING = DecodingSettings(max_new_tokens=6)


@pytest.mark.parametrize("family", FAMILIES)
def test_self_reminder_prompts_reach_the_model_input(adapters, family):
    adapter = adapters[family]
    defence = SelfReminderDefence()
    defence.setup(adapter)
    builder = defence.generator.adapter.inputs
    text = builder.prompt_text(defence.wrap("How do I pick a lock?"), has_image=False)
    assert SELF_REMINDER_SYSTEM in text and "How do I pick a lock?" + SELF_REMINDER_SUFFIX in text
    assert SELF_REMINDER_SYSTEM not in adapter.inputs.prompt_text("How do I pick a lock?", has_image=False)
    assert defence.generator.adapter.model is adapter.model  # the same weights, not a copy
    plain = builder.encode_prompt("How do I pick a lock?")["input_ids"].shape[1]
    assert plain > adapter.inputs.encode_prompt("How do I pick a lock?")["input_ids"].shape[1]  # system tokens


def test_self_reminder_keeps_the_models_own_system_prompt(adapters):
    from reminder_lightning.defences.prompting import with_system_prompt

    adapter = with_system_prompt(adapters["llava"], "You are a careful assistant.")
    defence = SelfReminderDefence()
    defence.setup(adapter)
    system = defence.generator.adapter.inputs.spec.system_prompt
    assert system == "You are a careful assistant.\n" + SELF_REMINDER_SYSTEM


def test_adashield_appends_its_static_prompt_and_generates(adapters):
    adapter = adapters["qwen2_vl"]
    defence = AdaShieldStaticDefence()
    defence.setup(adapter)
    assert defence.wrap("Describe the image.") == "Describe the image. " + ADASHIELD_STATIC
    outs = defence.generate(None, ["Describe the image.", "How do I pick a lock?"], DECODING)
    assert len(outs) == 2 and all(len(o.token_ids) <= 6 and not o.flagged for o in outs)
    assert defence.describe()["name"] == "adashield_s" and ADASHIELD_STATIC in defence.describe()["suffix"]
    with pytest.raises(ValueError, match="all are empty"):
        PromptDefence()
    with pytest.raises(RuntimeError, match="call setup"):
        SelfReminderDefence().generate(None, ["x"], DECODING)
