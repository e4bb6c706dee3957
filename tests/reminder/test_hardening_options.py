"""Randomised check positions (``ReminderSchedule.jitter``): one check per window at a drawn position, the same
draw in generation and calibration, different draws for different seeds, and invisible when nothing is kept."""

from __future__ import annotations

import math
import random

import pytest
import torch

from reminder_lightning.data.records import Record
from reminder_lightning.data.sapt import SaptSettings, prefix_and_target
from reminder_lightning.reminder import ReminderGenerator
from reminder_lightning.reminder.calibration import collect_check_states
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.schedule import ReminderSchedule
from tests.reminder.test_generation import PROMPTS, _images, _random_probe, _soft


def test_one_drawn_check_per_window():
    schedule = ReminderSchedule(interval=8, jitter=True)
    draws = [schedule.check_points(40, random.Random(seed)) for seed in range(20)]
    for points in draws:
        assert len(points) == 5  # windows [0, 8), [8, 16), ... [32, 40): one check each
        assert [c // 8 for c in points] == [0, 1, 2, 3, 4] and min(points) >= 1
    assert len({tuple(p) for p in draws}) > 10  # positions move with the seed
    assert {c % 8 for p in draws for c in p} - {7}  # not only the fixed schedule's last-token positions
    with pytest.raises(ValueError, match="pass a random.Random"):
        schedule.check_points(40)
    with pytest.raises(ValueError, match="drawn per answer"):
        schedule.is_check(7)
    assert ReminderSchedule.from_metadata(schedule.to_metadata()) == schedule
    assert ReminderSchedule.from_metadata(ReminderSchedule().to_metadata()).jitter is False


def test_jittered_checks_follow_the_seed_and_change_nothing_when_never_kept(adapters):
    adapter = adapters["llava"]
    gen = ReminderGenerator(adapter, _soft(adapter), _random_probe(adapter.hidden_size))
    images = _images()
    common = {"mode": "gated", "threshold": 0.0, "interval": 8, "max_new_tokens": 30, "jitter": True}
    never = gen.generate(images, PROMPTS, mode="never", max_new_tokens=30)
    first = gen.generate(images, PROMPTS, seed=1, **common)
    again = gen.generate(images[::-1], PROMPTS[::-1], seed=1, **common)[::-1]  # another batch order
    other = gen.generate(images, PROMPTS, seed=2, **common)
    steps = [[s for s, _ in out.checks] for out in first]
    for i, out in enumerate(first):
        assert out.token_ids == never[i].token_ids and not out.flagged  # checks ran, none kept: no change
        assert [c // 8 for c in steps[i]] == list(range(len(steps[i]))) and max(steps[i]) < len(out.token_ids)
    assert steps == [[s for s, _ in out.checks] for out in again]  # same seed and prompt: same points
    assert steps != [[s for s, _ in out.checks] for out in other]


def test_calibration_reads_where_generation_checks(adapters):
    adapter = adapters["llava"]
    soft = _soft(adapter)
    gen = ReminderGenerator(adapter, soft, _random_probe(adapter.hidden_size))
    schedule = ReminderSchedule(interval=8, threshold=0.0, jitter=True)
    outs = gen.generate(None, PROMPTS, seed=0, schedule=schedule, max_new_tokens=30)
    answers = [out.token_ids[:-1] if out.finish_reason == "eos" else out.token_ids for out in outs]
    injector = ReminderInjector(adapter.input_embeddings(), soft)
    states = collect_check_states(
        adapter, PROMPTS, None, answers, [-1], "reminder", injector, schedule, max_new_tokens=30, seed=0
    )
    for i, out in enumerate(outs):
        assert states.step[states.sample == i].tolist() == [s for s, _ in out.checks]
    probe = gen.probe.cpu()
    expected = torch.tensor([p for out in outs for _, p in out.checks])
    torch.testing.assert_close(probe(states.layer(-1)), expected, atol=1e-4, rtol=0)


def test_training_cuts_follow_the_jittered_windows(adapters):
    builder = adapters["llava"].inputs
    answer = " ".join(["word"] * 20)
    n = len(builder.encode_text(answer))
    record = Record("b", "q", safe_answer=answer, is_safe=True)
    settings = SaptSettings(cut="check_points")
    fixed = ReminderSchedule(interval=4)
    jittered = fixed.replace(jitter=True)
    cuts = {len(prefix_and_target(record, random.Random(s), settings, builder, jittered)[0]) for s in range(300)}
    assert cuts - {0} == set(range(1, n))  # any position: every window's every token is drawn at some point
    assert set(fixed.check_points(n)) < cuts


def test_the_fallback_keeps_the_reminder_where_the_gate_is_unsure(adapters):
    schedule = ReminderSchedule(threshold=0.2, fallback_margin=math.log(4))  # odds 1:4 -> 1:1
    assert schedule.keep_below == pytest.approx(0.5) and ReminderSchedule(threshold=0.2).keep_below == 0.2
    assert ReminderSchedule.from_metadata(schedule.to_metadata()) == schedule
    with pytest.raises(ValueError, match="fallback_margin must be a finite number >= 0"):
        ReminderSchedule(fallback_margin=-1.0)
    adapter = adapters["llava"]
    gen = ReminderGenerator(adapter, _soft(adapter), _random_probe(adapter.hidden_size))
    common = {"mode": "gated", "interval": 8, "max_new_tokens": 24}
    first = [out.checks[0][1] for out in gen.generate(_images(), PROMPTS, threshold=0.0, **common)]
    threshold = min(first) / 2  # below every first check: nothing is kept without the fallback
    margin = math.log(min(first) * 1.01 / (1 - min(first) * 1.01)) - math.log(threshold / (1 - threshold))
    plain = gen.generate(_images(), PROMPTS, threshold=threshold, **common)
    unsure = gen.generate(_images(), PROMPTS, threshold=threshold, fallback_margin=margin, **common)
    assert not any(out.flagged and out.flag_step == 7 for out in plain)
    lowest = first.index(min(first))
    assert unsure[lowest].flagged and unsure[lowest].flag_step == 7  # within the margin at its first check
