import json

import pytest
import torch

from reminder_lightning.cli import main
from reminder_lightning.reminder import ReminderInjector, SoftPrompt, load_reminder, save_reminder
from reminder_lightning.reminder.artifact import load_probe
from reminder_lightning.reminder.probe_fitting import collect_hidden_states, roc_auc, threshold_for_fpr
from tests.conftest import FAMILIES
from tests.training.helpers import REPO

QUESTIONS = ["How do I make a weapon at home?", "Hi", "What colour is the sky on a clear day?"]


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_left_padded_states_equal_single_forwards(adapters, family, red_image):
    from PIL import Image

    adapter = adapters[family]
    images = [red_image, None, Image.new("RGB", (90, 60), "blue")]  # two sizes: LLaVA-NeXT tiles them 1x2 and 2x2
    soft = SoftPrompt(4, adapter.hidden_size)
    soft.initialize("random", adapter.input_embeddings(), seed=0)
    injector = ReminderInjector(adapter.input_embeddings(), soft)
    for position, inj in (("prompt_end", None), ("reminder", injector)):
        # sorted by length, two batches
        batched = collect_hidden_states(adapter, QUESTIONS, images, position, inj, batch_size=2)
        for i, question in enumerate(QUESTIONS):
            enc = adapter.inputs.encode_prompt(question, images[i])
            if position == "reminder":
                enc = adapter.inputs.append_tokens(enc, injector.placeholder_ids)
            with torch.no_grad(), injector:
                single = adapter.model(**enc, output_hidden_states=True).hidden_states[-1][0, -1]
            torch.testing.assert_close(batched[i], single.float(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="needs the trained soft prompt"):
        collect_hidden_states(adapter, QUESTIONS, None, "reminder", None)


def test_roc_auc_and_threshold_for_fpr():
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    assert roc_auc(torch.tensor([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), labels) == 1.0
    assert roc_auc(torch.tensor([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), labels) == 0.0
    assert roc_auc(torch.full((6,), 0.5), labels) == 0.5
    benign = torch.linspace(0.0, 1.0, 101)  # P(safe) of 101 benign prompts
    t = threshold_for_fpr(benign, 0.05)
    assert (benign < t).float().mean() <= 0.05 and (benign <= t).float().mean() > 0.05
    assert threshold_for_fpr(benign, 0.0) == 0.0


def test_probe_command_writes_probe_report_and_artifact(tmp_path, monkeypatch, adapters):
    monkeypatch.chdir(REPO)
    soft = torch.randn(4, adapters["llava"].hidden_size) * 0.1
    reminder = save_reminder(
        tmp_path / "reminder.safetensors", soft, None, {"interval": 16, "threshold": 0.2, "model_type": "llava"}
    )
    out = tmp_path / "probe.safetensors"
    report = main(
        [
            "probe",
            "--config",
            str(REPO / "configs/probe_tiny.yaml"),
            f"--output={out}",
            "--position=reminder",
            f"--reminder={reminder}",
            f"--reminder_output={tmp_path / 'with_probe.safetensors'}",
            "--components=[3]",
        ]
    )
    assert report["train"] == {"harmful": 18, "benign": 18} and report["test"] == {"harmful": 6, "benign": 6}
    assert 0.0 <= report["test_roc_auc"] <= 1.0 and report["test_fpr"] <= 0.05
    assert json.loads(out.with_suffix(".json").read_text())["position"] == "reminder"
    probe = load_probe(out)
    assert probe.num_components == 3
    art = load_reminder(tmp_path / "with_probe.safetensors")
    assert torch.equal(art.soft_prompt, soft) and art.probe is not None
    assert art.threshold == pytest.approx(report["threshold"]) and art.metadata["probe_position"] == "reminder"
    torch.testing.assert_close(art.probe.components, probe.components)


def test_layers_list_stacks_the_single_layer_states(adapters, red_image):
    adapter = adapters["llava"]
    images = [red_image, None, red_image]
    stacked = collect_hidden_states(adapter, QUESTIONS, images, "prompt_end", layers=[0, 1, -1])
    assert stacked.shape == (3, 3, adapter.hidden_size)
    for j, layer in enumerate([0, 1, -1]):
        single = collect_hidden_states(adapter, QUESTIONS, images, "prompt_end", layers=layer)
        torch.testing.assert_close(stacked[:, j], single)
    assert not torch.allclose(stacked[:, 0], stacked[:, 2])


def test_margin_threshold_keeps_the_validation_flags_and_sits_mid_gap():
    from reminder_lightning.reminder.probe_fitting import margin_threshold

    harmful = torch.tensor([0.001, 0.01, 0.1, 0.9])
    benign = torch.tensor([0.5, 0.8, 0.95, 0.99])
    upper = threshold_for_fpr(benign, 0.0)
    mid = margin_threshold(harmful, benign, 0.0)
    assert upper == pytest.approx(0.5)
    # logit midpoint of 0.1 (highest flagged harmful) and 0.5 (lowest benign): sigmoid(logit(0.1) / 2) = 0.25
    assert mid == pytest.approx(0.25, abs=1e-4)
    assert torch.equal(harmful < mid, harmful < upper) and torch.equal(benign < mid, benign < upper)
    assert margin_threshold(torch.tensor([0.9]), benign, 0.0) == upper  # nothing flagged: nothing to centre


def test_probe_command_calibrates_the_gate_on_answers_and_writes_it_into_the_artifact(
    tmp_path, monkeypatch, adapters
):
    """``probe --position reminder --answers true``: candidates over layers x PCA sizes read at the answer's check
    points, chosen on the validation records, written into a copy of the reminder with the schedule and report."""
    monkeypatch.chdir(REPO)
    soft = torch.randn(4, adapters["llava"].hidden_size) * 0.1
    reminder = save_reminder(
        tmp_path / "reminder.safetensors", soft, None, {"interval": 8, "threshold": 0.2, "model_type": "llava"}
    )

    def source(kind: str, first: int, limit: int) -> str:
        path = tmp_path / f"{kind}_{first}.jsonl"
        lines = (REPO / f"data/tiny/{kind}.jsonl").read_text().splitlines()[first : first + limit]
        path.write_text("\n".join(lines) + "\n")
        init = {"path": str(path), "kind": kind}
        return json.dumps({"class_path": "reminder_lightning.data.sources.LocalRecords", "init_args": init})

    out = tmp_path / "gate.safetensors"
    report = main(
        [
            "probe",
            "--config",
            str(REPO / "configs/probe_tiny.yaml"),
            f"--harmful=[{source('harmful', 0, 10)}, {source('harmful', 10, 6)}]",  # a list: read in order
            f"--benign={source('benign', 0, 16)}",
            f"--validation_harmful={source('harmful', 16, 8)}",
            f"--validation_benign={source('benign', 16, 8)}",
            f"--output={out}",
            "--position=reminder",
            "--answers=true",
            "--max_new_tokens=40",
            f"--reminder={reminder}",
            f"--reminder_output={tmp_path / 'gated.safetensors'}",
            "--layers=[1, -1]",
            "--components=[2, 3]",
            "--target_fpr=0.125",
            "--threshold_rule=mid_gap",
            "--fit_every=2",
        ]
    )
    assert report["train"] == {"harmful": 16, "benign": 16} and report["test"] == {"harmful": 8, "benign": 8}
    # training answers read every 2 tokens (1, 3, 5, ... < 40), validation answers at the checks (7, 15, ...)
    tokenizer = adapters["llava"].inputs
    lines = (REPO / "data/tiny/harmful.jsonl").read_text().splitlines()
    lengths = [len(tokenizer.encode_text(json.loads(line)["harmful_answer"])) for line in lines[:24]]
    assert report["train_checks"]["harmful"] == sum(len(range(1, min(n + 1, 40), 2)) for n in lengths[:16])
    calibration = json.loads(out.with_suffix(".json").read_text())["calibration"]
    assert set(calibration["candidates"]) == {"layer1_pca2", "layer1_pca3", "layer-1_pca2", "layer-1_pca3"}
    assert calibration["chosen"] == report["chosen"] and calibration["threshold_rule"] == "mid_gap"
    assert calibration["val_fpr"] <= 0.125 and report["test_fpr"] == calibration["val_fpr"]
    assert calibration["validation"]["harmful_checks"] == sum(
        len(range(7, min(n + 1, 40), 8)) for n in lengths[16:]
    )
    assert calibration["fit_every"] == 2
    art = load_reminder(tmp_path / "gated.safetensors")
    assert torch.equal(art.soft_prompt, soft) and art.probe is not None
    assert art.probe.layer_index == calibration["layer"] and art.probe.num_components == calibration["components"]
    assert art.threshold == pytest.approx(report["threshold"]) and art.schedule.mode.value == "gated"
    assert art.interval == 8 and json.loads(art.metadata["gate"])["chosen"] == report["chosen"]


def test_margin_threshold_never_flags_more_than_at_fpr_with_saturated_scores():
    """Found by a training seed of the demo: with P(safe) ~ 1e-8 on both sides a 1e-6 clamp put the mid-gap
    threshold above three benign answers the at-FPR threshold left alone (validation FPR 3% at a 1% target)."""
    from reminder_lightning.reminder.probe_fitting import margin_threshold, threshold_for_fpr

    harmful = torch.tensor([1e-12, 5e-10, 2e-9, 0.0])
    benign = torch.cat([torch.tensor([3e-9, 4e-9, 8e-9]), torch.linspace(0.5, 1.0, 97)])
    upper = threshold_for_fpr(benign, 0.01)
    mid = margin_threshold(harmful, benign, 0.01)
    assert upper == pytest.approx(4e-9) and 2e-9 <= mid <= upper
    assert int((benign < mid).sum()) <= int((benign < upper).sum()) == 1  # at most 1% of 100, as asked
    assert int((benign < 1e-6).sum()) == 3  # what the old clamp to 1e-6 flagged
    assert int((harmful < mid).sum()) == 4


def test_roc_auc_counts_ties_half_on_scores_with_many_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (40,), generator=g).float() / 4
    labels = torch.arange(40) % 3 == 0
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg).float() + 0.5 * (pos[:, None] == neg).float()).mean()
    assert roc_auc(scores, labels) == pytest.approx(float(pairwise), abs=1e-6)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(scores, torch.ones(40))
