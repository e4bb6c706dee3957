"""Adaptive GCG: the suffix search scores the defended pipeline (target, gate at every check, the continuation
after the reminder), its gradient is that loss's, and its suffixes are tied to the artifact they were fitted on."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reminder_lightning.attacks.adaptive_gcg import AdaptiveGCGAttack, AdaptiveSuffixSearch
from reminder_lightning.attacks.gcg import SUFFIX_FILE, attacked_prompt
from reminder_lightning.evaluation.store import read_jsonl
from reminder_lightning.reminder import save_reminder
from reminder_lightning.reminder.injection import ReminderInjector
from tests.attacks.test_gcg import IMAGE, SAMPLES
from tests.reminder.test_generation import _random_probe, _soft

TARGET = "Sure, here is how to do it step by step"


def _artifact(adapter, path, seed: int = 0, interval: int = 4):
    probe = _random_probe(adapter.hidden_size, seed=seed)
    probe.coef.mul_(0.2)  # P(safe) away from 0 and 1
    meta = {"interval": interval, "threshold": 0.5, "model_type": "llava"}
    return str(save_reminder(path, _soft(adapter, seed=seed + 1).weight.detach(), probe, meta))


def _reference(adapter, artifact, suffix_ids: list[int], target: str, weights: dict) -> float:
    """The adaptive loss recomputed through the ordinary prompt encoding (not through the search's layout)."""
    from reminder_lightning.reminder.artifact import load_reminder

    art = load_reminder(artifact)
    inputs = adapter.inputs
    injector = ReminderInjector(adapter.input_embeddings(), art.soft_prompt_module())
    suffix = adapter.tokenizer.decode(suffix_ids)[1:]
    encoded = inputs.encode_prompt(attacked_prompt(SAMPLES[0].prompt, suffix), Image.open(IMAGE).convert("RGB"))
    ids = inputs.encode_text(target)

    def forward(answer: list[int], scored: list[int]):
        with torch.no_grad(), injector:
            out = adapter.model(**inputs.append_tokens(encoded, answer), output_hidden_states=True)
        ce = F.cross_entropy(out.logits[0, -len(scored) - 1 : -1].float(), torch.tensor(scored))
        return ce, out.hidden_states

    total = weights["target_weight"] * float(forward(ids, ids)[0])
    checks = art.schedule.check_points(len(ids))
    for c in checks:
        ce, states = forward(ids[:c] + injector.placeholder_ids + ids[c:], ids[c:])
        logit = art.probe.logit(art.probe.select(states)[0, -len(ids[c:]) - 1])
        total += (weights["safe_weight"] * float(F.softplus(-logit)) + weights["after_weight"] * float(ce)) / len(
            checks
        )
    return total


@pytest.mark.parametrize(
    "weights",
    [
        {"target_weight": 1.0, "safe_weight": 1.0, "after_weight": 1.0},
        {"target_weight": 0.0, "safe_weight": 1.0, "after_weight": 0.0},
    ],
)
def test_the_search_scores_the_defended_pipeline(adapters, tmp_path, weights):
    adapter = adapters["llava"]
    artifact = _artifact(adapter, tmp_path / "r.safetensors")
    search = AdaptiveSuffixSearch(adapter, artifact, weights=weights)
    ids = search.initial_suffix("!", 5)
    layout = search.layout(SAMPLES[0].prompt, Image.open(IMAGE).convert("RGB"), ids, TARGET)
    n_target = len(adapter.inputs.encode_text(TARGET))
    assert [c for c, _, _ in layout.checks] == list(range(3, n_target, 4))  # after 3, 7, ... answer tokens
    losses, _ = search.losses(layout, ids[None])
    assert float(losses[0]) == pytest.approx(
        _reference(adapter, artifact, ids.tolist(), TARGET, weights), abs=1e-4
    )


def test_the_one_hot_gradient_is_the_adaptive_losss(adapters, tmp_path):
    adapter = adapters["llava"]
    search = AdaptiveSuffixSearch(adapter, _artifact(adapter, tmp_path / "r.safetensors"))
    ids = search.initial_suffix("!", 5)
    layout = search.layout(SAMPLES[0].prompt, Image.open(IMAGE).convert("RGB"), ids, TARGET)
    grad = search.token_gradient(layout, ids, normalise=False)
    table = search.table()
    base = table[ids].double()
    position, eps = 1, 1e-2
    for token in (100, 400):
        direction = torch.zeros_like(base)
        direction[position] = table[token].double() - table[ids[position]].double()
        with torch.no_grad():
            up = float(search.loss_with_embeds(layout, (base + eps * direction).float()))
            down = float(search.loss_with_embeds(layout, (base - eps * direction).float()))
        analytic = float(grad[position, token] - grad[position, ids[position]])
        assert analytic == pytest.approx((up - down) / (2 * eps), rel=2e-2, abs=1e-3)


def test_suffixes_record_the_gate_and_are_tied_to_their_artifact(adapters, tmp_path):
    adapter = adapters["llava"]
    first, other = (
        _artifact(adapter, tmp_path / "a.safetensors"),
        _artifact(adapter, tmp_path / "b.safetensors", 7),
    )
    settings = {"num_steps": 2, "search_width": 8, "topk": 8, "suffix_length": 4, "early_stop": False}
    sample = [replace(SAMPLES[0], meta={"target": TARGET})]
    n_target = len(adapter.inputs.encode_text(TARGET))
    attack = AdaptiveGCGAttack(first, **settings)
    attack.set_model(adapter)
    attack.fit(sample, tmp_path)
    (row,) = read_jsonl(tmp_path / SUFFIX_FILE)
    assert attack.steps_run == 2 and row["loss"] <= row["init_loss"]
    assert row["checks"] == list(range(3, n_target, 4)) and len(row["check_p_safe"]) == len(row["checks"])
    assert row["gate_evaded"] == all(p >= 0.5 for p in row["check_p_safe"])
    again = AdaptiveGCGAttack(first, **settings)
    again.set_model(adapter)
    again.fit(sample, tmp_path)
    assert again.steps_run == 0  # same artifact, same prompt and target: reused
    moved = AdaptiveGCGAttack(other, **settings)
    moved.set_model(adapter)
    moved.fit(sample, tmp_path)
    assert moved.steps_run == 2  # another reminder: searched again, never reused
    (attacked,) = moved.apply(sample, tmp_path)
    assert attacked.benchmark == "bench+adaptive_gcg" and attacked.prompt.startswith(SAMPLES[0].prompt + " ")
    short = AdaptiveGCGAttack(first, **settings, target="Sure")
    short.set_model(adapter)
    with pytest.raises(ValueError, match="never tried inside a target"):
        short.fit(SAMPLES[:1], tmp_path / "short")
