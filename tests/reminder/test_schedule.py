"""ReminderSchedule: the one home of interval / threshold / mode, and every user of its check points agrees."""

from __future__ import annotations

import random

import pytest

from reminder_lightning.attacks.adaptive_pgd import check_cuts
from reminder_lightning.data.records import Record
from reminder_lightning.data.sapt import SaptSettings, prefix_and_target
from reminder_lightning.reminder import ReminderGenerator, SoftPrompt
from reminder_lightning.reminder.generation import ReminderGenerationConfig
from reminder_lightning.reminder.schedule import GateMode, ReminderSchedule


def test_check_points_and_is_check_agree():
    schedule = ReminderSchedule(interval=16)
    assert schedule.check_points(48) == [15, 31, 47] and schedule.check_points(47) == [15, 31]
    assert [g for g in range(1, 100) if schedule.is_check(g)] == schedule.check_points(100)
    assert ReminderSchedule(interval=1).check_points(4) == [1, 2, 3]  # never "after 0 tokens"
    assert not ReminderSchedule(mode="never").is_check(15)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"interval": 0}, "interval must be an integer >= 1"),
        ({"threshold": float("nan")}, "finite number in \\[0, 1\\]"),
        ({"threshold": 1.5}, "finite number in \\[0, 1\\]"),
        ({"mode": "sometimes"}, "mode must be one of"),
    ],
)
def test_invalid_settings_fail_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message):
        ReminderSchedule(**changes)


def test_metadata_round_trip_and_string_modes():
    schedule = ReminderSchedule(interval=8, threshold=0.05, mode="always", keep_checking_after_flag=True)
    assert schedule.mode is GateMode.always
    assert ReminderSchedule.from_metadata(schedule.to_metadata()) == schedule
    assert ReminderSchedule.from_metadata({"interval": "8"}, threshold=0.3) == ReminderSchedule(8, 0.3)


def test_generation_config_routes_schedule_overrides():
    config = ReminderGenerationConfig(max_new_tokens=10)
    updated = config.updated(interval=4, max_new_tokens=20)
    assert updated.schedule.interval == 4 and updated.max_new_tokens == 20 and config.schedule.interval == 16
    with pytest.raises(TypeError, match="Unknown generation setting"):
        config.updated(intervall=4)


def test_generator_sapt_and_adaptive_attack_use_the_same_check_points(adapters):
    """The generator checks exactly where SAPT cuts and the adaptive attack attacks."""
    adapter = adapters["llava"]
    schedule = ReminderSchedule(interval=4, mode="always", keep_checking_after_flag=True)
    soft = SoftPrompt(2, adapter.hidden_size)
    generator = ReminderGenerator(adapter, soft, None, ReminderGenerationConfig(schedule=schedule))
    out = generator.generate(None, ["Hello there"], max_new_tokens=14, min_new_tokens=14)[0]
    assert [step for step, _ in out.checks] == schedule.check_points(14) == [3, 7, 11]
    assert check_cuts(14, 4) == schedule.check_points(14)
    builder = adapter.inputs
    answer_ids = builder.encode_text(" ".join(["word"] * 20))
    record = Record("b", "q", safe_answer=" ".join(["word"] * 20), is_safe=True)
    cuts = {
        len(prefix_and_target(record, random.Random(s), SaptSettings(cut="check_points"), builder, schedule)[0])
        for s in range(200)
    }
    assert cuts - {0} == set(schedule.check_points(len(answer_ids)))
