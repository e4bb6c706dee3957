import random

import pytest
import torch

from reminder_lightning.data.records import Record
from reminder_lightning.data.sapt import (
    IGNORE_INDEX,
    SaptSettings,
    cut_prefix,
    encode_example,
    prefix_and_target,
)
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.training.loss import per_sample_lm_loss
from tests.conftest import FAMILIES

ANSWER = "Sure, here is how to do it. First, gather the materials you need. Then follow each step in order."


def test_cut_prefix_rule():
    rng = random.Random(0)
    cuts = [cut_prefix(ANSWER, rng) for _ in range(3000)]
    empty = sum(c == "" for c in cuts) / len(cuts)
    assert 0.30 < empty < 0.37  # p_empty = 1/3 (plus the rare cut with no space before it)
    for cut in cuts:
        assert ANSWER.startswith(cut)
        if cut:
            assert ANSWER[len(cut)] == " "  # cut back to the last space
            assert len(cut) < len(ANSWER)
    lengths = {len(c) for c in cuts if c}
    assert min(lengths) < 25 and max(lengths) > 80  # spread over [20, len]
    assert cut_prefix("too short", random.Random(0), p_empty=0.0) == ""


def test_prefix_and_target_for_harmful_and_benign():
    harmful = Record("h", "q", safe_answer="I can't help with that.", is_safe=False, harmful_answer=ANSWER)
    benign = Record("b", "q", safe_answer=ANSWER, is_safe=True)
    settings = SaptSettings(p_empty_prefix=0.0)
    for seed in range(20):
        prefix, target = prefix_and_target(harmful, random.Random(seed), settings)
        assert ANSWER.startswith(prefix) and target == harmful.safe_answer
        prefix, target = prefix_and_target(benign, random.Random(seed), settings)
        assert prefix + target == ANSWER and target
    with pytest.raises(ValueError, match="no harmful_answer"):
        prefix_and_target(Record("x", "q", "no", False), random.Random(0), settings)


@pytest.mark.parametrize("family", FAMILIES)
def test_labels_are_masked_exactly_through_the_reminder(adapters, family, red_image):
    builder = adapters[family].inputs
    placeholders = builder.placeholder_ids(4)
    prompt = builder.encode_prompt("How?", red_image)
    enc = encode_example(
        builder, placeholders, "How?", red_image, "Sure, first you", " I cannot help.", False, SaptSettings()
    )
    ids, labels, r = enc["input_ids"][0], enc["labels"][0], int(enc["reminder_index"][0])
    prefix_ids = builder.encode_text("Sure, first you")
    target_ids = builder.encode_text(" I cannot help.") + builder.end_of_answer_ids()
    assert torch.equal(ids[: prompt["input_ids"].shape[1]], prompt["input_ids"][0])
    assert ids[r - 3 : r + 1].tolist() == placeholders
    assert r == prompt["input_ids"].shape[1] + len(prefix_ids) + 3
    assert (labels[: r + 1] == IGNORE_INDEX).all()
    assert labels[r + 1 :].tolist() == target_ids == ids[r + 1 :].tolist()
    assert enc["is_safe"].item() == 0.0


def test_truncation_never_cuts_image_tokens(adapters, red_image):
    builder = adapters["llava"].inputs
    placeholders = builder.placeholder_ids(4)
    prompt_len = builder.encode_prompt("How?", red_image)["input_ids"].shape[1]
    long = " ".join(["word"] * 200)
    settings = SaptSettings(max_length=prompt_len + 4 + 20, min_target_tokens=8)
    enc = encode_example(builder, placeholders, "How?", red_image, long, long, False, settings)
    assert enc["input_ids"].shape[1] == settings.max_length
    n_image = torch.isin(enc["input_ids"], torch.tensor(sorted(builder.image_token_ids))).sum()
    assert n_image == builder.encode_prompt("How?", red_image)["input_ids"].eq(builder.config.image_token_id).sum()
    assert (enc["labels"] != IGNORE_INDEX).sum() >= 8  # target keeps min_target_tokens
    with pytest.raises(ValueError, match="Record 'r7'.*never cut"):
        encode_example(
            builder, placeholders, "How?", red_image, "", "x", False, SaptSettings(max_length=10), record_id="r7"
        )


def test_per_sample_loss_matches_cross_entropy_per_row():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6], [-100, -100, -100, -100, 1, -100]])
    got = per_sample_lm_loss(logits, labels)
    for b in range(2):
        mask = labels[b, 1:] != -100
        ref = torch.nn.functional.cross_entropy(logits[b, :-1][mask], labels[b, 1:][mask])
        torch.testing.assert_close(got[b], ref)
    with pytest.raises(ValueError, match="no target tokens"):
        per_sample_lm_loss(logits, torch.full((2, 6), -100))


def test_check_point_cuts_match_where_the_generator_checks(adapters):
    builder = adapters["llava"].inputs
    ids = builder.encode_text(ANSWER)
    assert len(ids) > 9
    harmful = Record("h", "q", safe_answer="I can't help with that.", is_safe=False, harmful_answer=ANSWER)
    benign = Record("b", "q", safe_answer=ANSWER, is_safe=True)
    settings, schedule = SaptSettings(cut="check_points"), ReminderSchedule(interval=4)
    points = set(range(3, len(ids), 4))  # the generator checks after 3, 7, 11 ... tokens
    seen = set()
    for seed in range(300):
        prefix, target = prefix_and_target(benign, random.Random(seed), settings, builder, schedule)
        assert isinstance(prefix, list) and prefix + target == ids and target  # token ids, never re-tokenised
        assert len(prefix) == 0 or len(prefix) in points
        seen.add(len(prefix))
        prefix, target = prefix_and_target(harmful, random.Random(seed), settings, builder, schedule)
        assert prefix == ids[: len(prefix)] and target == harmful.safe_answer
    assert seen == points | {0}
    with pytest.raises(ValueError, match="pass the prompt builder"):
        prefix_and_target(benign, random.Random(0), settings)
    with pytest.raises(ValueError, match="cut must be"):
        SaptSettings(cut="tokens")


def test_token_id_prefix_and_target_encode_like_text(adapters, red_image):
    builder = adapters["llava"].inputs
    placeholders = builder.placeholder_ids(4)
    prefix, target = "Sure, first you", " I cannot help."
    by_text = encode_example(builder, placeholders, "How?", red_image, prefix, target, False, SaptSettings())
    by_ids = encode_example(
        builder,
        placeholders,
        "How?",
        red_image,
        builder.encode_text(prefix),
        builder.encode_text(target),
        False,
        SaptSettings(),
    )
    for key in ("input_ids", "labels", "reminder_index"):
        assert torch.equal(by_text[key], by_ids[key])
