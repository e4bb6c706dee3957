"""The end check (``ReminderSchedule.check_at_end``): an answer that ends after tokens no check has read gets one
more check there; generation and calibration read the same state, and a kept reminder replaces the end."""

from __future__ import annotations

import pytest
import torch

from reminder_lightning.reminder import ReminderGenerator
from reminder_lightning.reminder.calibration import collect_check_states
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.schedule import ReminderSchedule
from tests.reminder.test_generation import PROMPTS, _images, _random_probe, _soft


def test_the_end_point_is_the_answer_end_unless_a_check_reads_there():
    on = ReminderSchedule(interval=8, check_at_end=True)
    assert on.end_point(5, on.check_points(6)) == 5  # shorter than the first check point
    assert on.end_point(12, on.check_points(13)) == 12  # the tail after the check at 7
    assert on.end_point(7, on.check_points(8)) is None  # the check at 7 already reads the whole answer
    assert on.end_point(0, []) is None  # an empty answer: nothing to read
    assert ReminderSchedule(interval=8).end_point(5, []) is None  # off by default
    assert on.replace(mode="never").end_point(5, []) is None
    assert ReminderSchedule.from_metadata(on.to_metadata()) == on


def _early_end(adapter, monkeypatch) -> tuple[int, int]:
    """Make a token sample 0 writes early (its first use at index >= 2, below the first check at 7) the model's
    end-of-answer token; returns (token, answer tokens before it)."""
    gen = ReminderGenerator(adapter, None)
    ids = gen.generate(_images(), PROMPTS, max_new_tokens=24)[0].token_ids
    k = next(k for k in range(2, 7) if ids[k] not in ids[:k])
    monkeypatch.setattr(adapter.model.generation_config, "eos_token_id", ids[k])
    return ids[k], k


def test_an_answer_that_ends_before_any_check_is_checked_at_its_end(adapters, monkeypatch):
    adapter = adapters["llava"]
    eos, k = _early_end(adapter, monkeypatch)
    gen = ReminderGenerator(adapter, _soft(adapter), _random_probe(adapter.hidden_size))
    common = {"mode": "gated", "interval": 8, "max_new_tokens": 24}
    plain = gen.generate(_images(), PROMPTS, threshold=0.0, **common)
    assert plain[0].finish_reason == "eos" and len(plain[0].token_ids) == k + 1 and plain[0].checks == []

    unkept = gen.generate(_images(), PROMPTS, threshold=0.0, check_at_end=True, **common)
    for before, after in zip(plain, unkept, strict=True):
        assert after.token_ids == before.token_ids and not after.flagged  # read, never kept: nothing changes
        n = len(before.token_ids) - 1
        end = [n] if before.finish_reason == "eos" and n % 8 != 7 else []
        assert [s for s, _ in after.checks] == [s for s, _ in before.checks] + end
        p_before, p_after = [p for _, p in before.checks], [p for _, p in after.checks][: len(before.checks)]
        assert p_after == pytest.approx(p_before, abs=1e-5)  # masked reminder slots: float noise only
    assert [s for s, _ in unkept[0].checks] == [k]

    kept = gen.generate(_images(), PROMPTS, threshold=1.0, check_at_end=True, **common)[0]
    assert kept.flagged and kept.flag_step == k  # the reminder went in where the answer would have ended
    assert kept.token_ids[:k] == plain[0].token_ids[:k] and len(kept.token_ids) > k + 1  # it went on
    assert kept.text_before == adapter.tokenizer.decode(plain[0].token_ids[:k], skip_special_tokens=True)


def test_calibration_reads_the_end_state_generation_reads(adapters, monkeypatch):
    adapter = adapters["llava"]
    _early_end(adapter, monkeypatch)
    soft = _soft(adapter)
    gen = ReminderGenerator(adapter, soft, _random_probe(adapter.hidden_size))
    schedule = ReminderSchedule(interval=8, threshold=0.0, check_at_end=True)
    outs = gen.generate(_images(), PROMPTS, schedule=schedule, max_new_tokens=24)
    answers = [out.token_ids[:-1] if out.finish_reason == "eos" else out.token_ids for out in outs]
    injector = ReminderInjector(adapter.input_embeddings(), soft)
    states = collect_check_states(
        adapter, PROMPTS, _images(), answers, [-1], "reminder", injector, schedule, max_new_tokens=24
    )
    for i, out in enumerate(outs):
        assert states.step[states.sample == i].tolist() == [s for s, _ in out.checks]
    expected = torch.tensor([p for out in outs for _, p in out.checks])
    torch.testing.assert_close(gen.probe.cpu()(states.layer(-1)), expected, atol=1e-4, rtol=0)
    off = collect_check_states(
        adapter,
        PROMPTS,
        _images(),
        answers,
        [-1],
        "reminder",
        injector,
        schedule.replace(check_at_end=False),
        max_new_tokens=24,
    )
    assert len(off.step) < len(states.step)


def test_the_defence_records_the_end_check_and_the_artifact_carries_it(tmp_path):
    from reminder_lightning.defences.safety_reminder import SafetyReminderDefence
    from reminder_lightning.reminder.artifact import save_reminder

    path = save_reminder(tmp_path / "r.safetensors", torch.randn(4, 8), None, {"interval": 16, "threshold": 0.2})
    assert "check_at_end" not in SafetyReminderDefence(str(path)).describe()  # older folders stay valid
    assert SafetyReminderDefence(str(path), check_at_end=True).describe()["check_at_end"] is True
    stored = save_reminder(tmp_path / "e.safetensors", torch.randn(4, 8), None, {"check_at_end": "True"})
    assert SafetyReminderDefence(str(stored)).load().config.schedule.check_at_end
