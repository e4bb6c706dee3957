"""Exactness of gated periodic injection over the KV cache, on tiny models of every family."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from reminder_lightning.reminder import ReminderGenerator, SafetyProbe, SafetyReminder, SoftPrompt, save_reminder
from reminder_lightning.reminder.generation import steps
from reminder_lightning.reminder.generation.text import seam
from reminder_lightning.reminder.schedule import ReminderSchedule
from tests.conftest import FAMILIES

PROMPTS = ["What is in the image please?", "Hi", "Describe this long picture in detail now"]


def _images():
    return [Image.new("RGB", (70, 50), "red"), None, Image.new("RGB", (90, 60), "blue")]


def _soft(adapter, seed=1):
    soft = SoftPrompt(4, adapter.hidden_size)
    soft.initialize("random", adapter.input_embeddings(), seed=seed)
    return soft


def _random_probe(hidden: int, seed: int = 0) -> SafetyProbe:
    g = torch.Generator().manual_seed(seed)
    probe = SafetyProbe(hidden, 3)
    probe.components.copy_(torch.randn(3, hidden, generator=g) / hidden**0.5)
    probe.coef.copy_(torch.randn(3, generator=g) * 3)
    return probe


@pytest.mark.parametrize("family", FAMILIES)
def test_without_flags_tokens_equal_plain_greedy_generate(adapters, family):
    adapter = adapters[family]
    gen = ReminderGenerator(adapter, _soft(adapter), _random_probe(adapter.hidden_size))
    images = _images()
    enc = steps.encode_batch(adapter, images, PROMPTS)
    with torch.no_grad():
        reference = adapter.model.generate(**enc, max_new_tokens=30, do_sample=False)
    prompt_len = enc["input_ids"].shape[1]
    never = gen.generate(images, PROMPTS, mode="never", max_new_tokens=30)
    checked = gen.generate(images, PROMPTS, mode="gated", threshold=0.0, interval=8, max_new_tokens=30)
    for i in range(len(PROMPTS)):
        expected = reference[i, prompt_len:].tolist()[: len(never[i].token_ids)]
        assert never[i].token_ids == expected
        # checks ran (the reminder went into the cache) but none was kept: output identical
        assert checked[i].token_ids == never[i].token_ids
        assert not checked[i].flagged and [s for s, _ in checked[i].checks][:3] == [7, 15, 23]
        assert all(0.0 <= p <= 1.0 for _, p in checked[i].checks)


@pytest.mark.parametrize("family", FAMILIES)
def test_after_a_forced_flag_logits_equal_a_from_scratch_forward(adapters, family):
    adapter = adapters[family]
    soft = _soft(adapter)
    gen = ReminderGenerator(adapter, soft, None)
    images, k = _images()[:2], 6
    outs = gen.generate(
        images, PROMPTS[:2], mode="always", interval=k + 1, max_new_tokens=k + 3, output_scores=True
    )
    builder = adapter.inputs
    for i, out in enumerate(outs):
        assert out.flagged and out.flag_step == k
        for extra in (0, 1):  # the first token after the reminder, and the one after it
            enc = builder.encode_prompt(PROMPTS[i], images[i])
            ids = out.token_ids[:k] + gen.injector.placeholder_ids + out.token_ids[k : k + extra]
            enc = builder.append_tokens(enc, ids)
            with torch.no_grad(), gen.injector:
                logits = adapter.model(**enc).logits[0, -1]
            torch.testing.assert_close(out.scores[k + extra], logits.float(), rtol=1e-4, atol=1e-4)
        assert out.text == seam(out.text_before, out.text_after)  # whole words, then a new paragraph


@pytest.mark.parametrize("family", FAMILIES)
def test_mixed_batch_equals_each_sample_alone(adapters, family):
    adapter = adapters[family]
    gen = ReminderGenerator(adapter, _soft(adapter, seed=2), _random_probe(adapter.hidden_size, seed=5))
    images = _images()
    alone = [
        gen.generate([images[i]], [PROMPTS[i]], threshold=0.0, interval=5, max_new_tokens=24)[0] for i in range(3)
    ]
    # without flags every check is the same as in the gated run up to its first flag, so a threshold between
    # the smallest and the next P(safe) over all samples flags exactly the sample that reaches the minimum
    all_p = sorted(p for o in alone for _, p in o.checks)
    threshold = (all_p[0] + all_p[1]) / 2
    alone = [
        gen.generate([images[i]], [PROMPTS[i]], threshold=threshold, interval=5, max_new_tokens=24)[0]
        for i in range(3)
    ]
    batch = gen.generate(images, PROMPTS, threshold=threshold, interval=5, max_new_tokens=24)
    assert {o.flagged for o in alone} == {True, False}
    for a, b in zip(alone, batch, strict=True):
        assert a.token_ids == b.token_ids
        assert (a.flagged, a.flag_step) == (b.flagged, b.flag_step)
        assert [s for s, _ in a.checks] == [s for s, _ in b.checks]
        for (_, pa), (_, pb) in zip(a.checks, b.checks, strict=True):
            assert pa == pytest.approx(pb, abs=1e-4)


def test_sampling_is_seeded_and_top_k_one_is_greedy(adapters):
    adapter = adapters["llava"]
    gen = ReminderGenerator(adapter, _soft(adapter), None)
    kw = dict(mode="never", max_new_tokens=12)
    greedy = gen.generate(None, ["Hi there"], **kw)[0].token_ids
    a = gen.generate(None, ["Hi there"], do_sample=True, temperature=1.5, seed=3, **kw)[0].token_ids
    b = gen.generate(None, ["Hi there"], do_sample=True, temperature=1.5, seed=3, **kw)[0].token_ids
    assert a == b and a != greedy
    assert gen.generate(None, ["Hi there"], do_sample=True, top_k=1, seed=9, **kw)[0].token_ids == greedy
    penalised = gen.generate(None, ["Hi there"], repetition_penalty=5.0, **kw)[0].token_ids
    assert len(set(penalised)) >= len(set(greedy))


def test_return_modes_stream_and_errors(adapters):
    adapter = adapters["qwen2_vl"]
    gen = ReminderGenerator(adapter, _soft(adapter), None)
    full = gen.generate(None, ["Hi"], mode="always", interval=4, max_new_tokens=10)[0]
    after = gen.generate(None, ["Hi"], mode="always", interval=4, max_new_tokens=10, return_text="after_reminder")[
        0
    ]
    assert full.flag_step == 3 and after.text == full.text_after and full.text.endswith(after.text)
    events = list(gen.stream(None, ["Hi"], mode="always", interval=4, max_new_tokens=10))
    assert "".join(e.text for e in events) == full.text
    assert [e.token_id for e in events] == full.token_ids
    assert [e.flagged_now for e in events].index(True) == 3
    with pytest.raises(ValueError, match="needs a probe"):
        gen.generate(None, ["Hi"], mode="gated")
    with pytest.raises(ValueError, match="mode must be"):
        gen.generate(None, ["Hi"], mode="sometimes")
    with pytest.raises(ValueError, match="2 images for 1 prompts"):
        gen.generate([None, None], ["Hi"], mode="never")
    with pytest.raises(ValueError, match="hidden size"):
        ReminderGenerator(adapter, SoftPrompt(4, 7), None)


@pytest.mark.parametrize("family", FAMILIES)
def test_streaming_yields_the_batch_text_for_every_family(adapters, family):
    adapter = adapters[family]
    gen = ReminderGenerator(adapter, _soft(adapter), None)
    images, prompts = _images()[:2], PROMPTS[:2]
    for mode in ("never", "always"):
        settings = dict(mode=mode, interval=4, max_new_tokens=10)
        batch = gen.generate(images, prompts, **settings)
        events = list(gen.stream(images, prompts, **settings))
        for i, out in enumerate(batch):
            mine = [e for e in events if e.sample == i]
            assert "".join(e.text for e in mine) == out.text and [e.token_id for e in mine] == out.token_ids
            assert any(e.flagged_now for e in mine) == (mode == "always")


def test_safety_reminder_loads_an_artifact_and_defends_a_plain_model(adapters, tmp_path):
    adapter = adapters["gemma3"]
    probe = _random_probe(adapter.hidden_size)
    path = save_reminder(
        tmp_path / "reminder.safetensors",
        _soft(adapter).weight,
        probe,
        {"interval": 5, "threshold": 1.0, "model_type": "gemma3", "base_model": "tiny:gemma3"},
    )
    reminder = SafetyReminder.load(path)
    assert reminder.config.schedule == ReminderSchedule(interval=5, threshold=1.0, mode="gated")
    out = reminder.generate(adapter.model, adapter.processor, [None], ["Hello"], max_new_tokens=12)[0]
    assert out.flagged and out.flag_step == 4  # threshold 1.0: every P(safe) < 1 flags at the first check
    with pytest.raises(ValueError, match="trained on a 'gemma3'"):
        reminder.generate(adapters["llava"].model, adapters["llava"].processor, None, ["Hi"])
    no_probe = SafetyReminder.load(save_reminder(tmp_path / "np.safetensors", _soft(adapter).weight))
    assert no_probe.config.mode == "always"


@pytest.mark.parametrize("family", ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3"])
def test_checks_read_the_probe_layer(adapters, family):
    adapter = adapters[family]
    probe = _random_probe(adapter.hidden_size, seed=3)
    probe.layer.fill_(1)  # the first decoder layer's output, not the last
    probe.coef.mul_(0.05)  # log-odds near 1, not 15-40: off the sigmoid's plateaus, where any two reads look alike
    gen = ReminderGenerator(adapter, _soft(adapter), probe)
    images = _images()[:1]
    out = gen.generate(images, PROMPTS[:1], mode="gated", threshold=0.0, interval=8, max_new_tokens=9)[0]
    step, p_safe = out.checks[0]
    assert step == 7
    builder = adapter.inputs
    enc = builder.append_tokens(
        builder.encode_prompt(PROMPTS[0], images[0]), out.token_ids[:7] + gen.injector.placeholder_ids
    )
    with torch.no_grad(), gen.injector:
        states = adapter.model(**enc, output_hidden_states=True).hidden_states
    assert p_safe == pytest.approx(float(probe(states[1][0, -1])), abs=1e-4)
    assert p_safe != pytest.approx(float(probe(states[-1][0, -1])), abs=1e-3)
