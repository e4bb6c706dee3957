"""Gate calibration: selection logic on known states, and the callback in a real tiny fit."""

from __future__ import annotations

import json

import pytest
import torch

from reminder_lightning.reminder import load_reminder
from reminder_lightning.reminder.calibration import CheckStates, fit_candidates, sample_scores
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.gate_selection import calibrate_gate, cross_fit_gate, select_gate
from tests.training.helpers import REPO, run_fit


def _states(hidden: torch.Tensor, sample: list[int], layers: list[int], n: int) -> CheckStates:
    return CheckStates(hidden, torch.tensor(sample), torch.zeros(len(sample), dtype=torch.long), layers, n)


def _two_layer_data(seed: int, n: int):
    """Layer 5 separates harmful from benign answers; layer -1 is noise. One answer has two checks."""
    g = torch.Generator().manual_seed(seed)
    harmful = torch.randn(n, 2, 8, generator=g)
    benign = torch.randn(n, 2, 8, generator=g)
    harmful[:, 0, 0] -= 4.0  # layer 5, dimension 0
    benign[:, 0, 0] += 4.0
    return harmful, benign


def test_selection_prefers_the_separating_layer_and_keeps_the_fpr():
    layers = [5, -1]
    h, b = _two_layer_data(0, 40)
    train_h, train_b = _states(h, list(range(40)), layers, 40), _states(b, list(range(40)), layers, 40)
    vh, vb = _two_layer_data(1, 50)
    val_h, val_b = _states(vh, list(range(50)), layers, 50), _states(vb, list(range(50)), layers, 50)
    candidates = fit_candidates(train_h, train_b, layers, [2, 4])
    assert set(candidates) == {"layer5_pca2", "layer5_pca4", "layer-1_pca2", "layer-1_pca4"}
    for rule in ("at_fpr", "mid_gap"):
        choice = select_gate(candidates, val_h, val_b, target_fpr=0.02, threshold_rule=rule)
        assert choice.probe.layer_index == 5 and choice.report["layer"] == 5
        scores_b = sample_scores(choice.probe, val_b)
        assert float((scores_b < choice.threshold).float().mean()) <= 0.02 == choice.report["target_fpr"]
        assert choice.report["val_tpr"] > 0.9 and choice.report["validation"]["benign_answers"] == 50
        assert choice.report["roc"][0] == [0.0, 0.0, 0.0] and choice.report["roc"][-1][:2] == [1.0, 1.0]
    with pytest.raises(ValueError, match="threshold_rule"):
        select_gate(candidates, val_h, val_b, threshold_rule="halfway")


def test_an_answer_is_flagged_by_its_lowest_check_and_answers_without_checks_never():
    probe = SafetyProbe(2, 1, layer=-1)
    probe.components.copy_(torch.tensor([[1.0, 0.0]]))
    probe.coef.copy_(torch.tensor([1.0]))
    hidden = torch.tensor([[[3.0, 0.0]], [[-3.0, 0.0]], [[2.0, 0.0]]])  # answer 0: two checks, answer 1: one
    states = _states(hidden, [0, 0, 1], [-1], 3)  # answer 2 has no check (ended before the first one)
    scores = sample_scores(probe, states)
    torch.testing.assert_close(
        scores, torch.tensor([torch.sigmoid(torch.tensor(-3.0)), 0.8808, 1.0]), atol=1e-4, rtol=0
    )


def test_too_few_validation_benign_answers_for_the_target_fpr_are_reported():
    layers = [5, -1]
    h, b = _two_layer_data(0, 10)
    states_h, states_b = _states(h, list(range(10)), layers, 10), _states(b, list(range(10)), layers, 10)
    choice = select_gate(fit_candidates(states_h, states_b, layers, [2]), states_h, states_b, target_fpr=0.01)
    assert "below the resolution of 10 validation benign answers" in choice.report["warnings"][0]


def test_a_gate_that_lets_validation_harmful_answers_through_is_warned_about_or_refused():
    """Overlapping classes: no threshold flags every harmful answer at 2% FPR. The report says how many pass and
    what to do; with a floor, the calibration refuses the gate. Separable classes: no such warning."""
    layers = [5]
    g = torch.Generator().manual_seed(3)
    h, b = torch.randn(50, 1, 8, generator=g), torch.randn(50, 1, 8, generator=g)
    h[:, 0, 0] -= 1.0  # weak signal: the classes overlap
    b[:, 0, 0] += 1.0
    states_h, states_b = _states(h, list(range(50)), layers, 50), _states(b, list(range(50)), layers, 50)
    choice = calibrate_gate(states_h, states_b, states_h, states_b, layers, [2], target_fpr=0.02)
    passed = round((1 - choice.report["val_tpr"]) * 50)
    assert 0 < passed < 50
    (warning,) = choice.report["warnings"]
    assert f"lets {passed} of 50 validation harmful answers through at target_fpr 0.02" in warning
    with pytest.raises(
        ValueError, match=r"Gate refused: validation TPR .* < min_val_tpr 95.0%.*Nothing is exported"
    ):
        calibrate_gate(states_h, states_b, states_h, states_b, layers, [2], target_fpr=0.02, min_val_tpr=0.95)
    floor = choice.report["val_tpr"]  # a floor it meets keeps the same gate
    kept = calibrate_gate(states_h, states_b, states_h, states_b, layers, [2], target_fpr=0.02, min_val_tpr=floor)
    assert kept.name == choice.name and kept.threshold == choice.threshold
    sh, sb = _two_layer_data(0, 50)
    clean_h, clean_b = _states(sh, list(range(50)), [5, -1], 50), _states(sb, list(range(50)), [5, -1], 50)
    separable = calibrate_gate(clean_h, clean_b, clean_h, clean_b, [5], [2], target_fpr=0.02, min_val_tpr=1.0)
    assert separable.report["val_tpr"] == 1.0 and separable.report["warnings"] == []


def test_cross_fitting_scores_every_validation_answer_out_of_fold():
    """Validation answers with random labels and no signal: probes that had seen them would separate them (128
    components, 40 answers), out-of-fold scores must not; the threshold still keeps the FPR."""
    g = torch.Generator().manual_seed(0)
    layers = [5]
    train_h, train_b = (_states(torch.randn(30, 1, 64, generator=g), list(range(30)), layers, 30) for _ in "hb")
    noise_h, noise_b = torch.randn(20, 1, 64, generator=g), torch.randn(20, 1, 64, generator=g)
    val_h, val_b = _states(noise_h, list(range(20)), layers, 20), _states(noise_b, list(range(20)), layers, 20)
    in_sample = fit_candidates(val_h, val_b, layers, [40])["layer5_pca40"]
    assert select_gate({"seen": in_sample}, val_h, val_b, 0.05).report["val_answer_auc"] > 0.95
    choice = cross_fit_gate(train_h, train_b, val_h, val_b, layers, [40], target_fpr=0.05, folds=4)
    assert choice.report["val_answer_auc"] < 0.8
    assert choice.report["val_fpr"] <= 0.05 + 1e-6 and choice.report["cross_fit"]["folds"] == 4


def test_cross_fitting_learns_from_validation_answers_and_exports_a_probe_fitted_on_all_of_them():
    """Training answers carry no signal; the validation answers do (layer 5, dimension 0). Fitted on training alone
    the gate catches little; cross-fitted, the out-of-fold scores catch most, and the exported probe is fitted on
    training + validation answers (its PCA mean is theirs)."""
    layers = [5, -1]
    g = torch.Generator().manual_seed(1)
    train_h, train_b = (_states(torch.randn(40, 2, 8, generator=g), list(range(40)), layers, 40) for _ in "hb")
    vh, vb = _two_layer_data(2, 60)
    val_h, val_b = _states(vh, list(range(60)), layers, 60), _states(vb, list(range(60)), layers, 60)
    plain = select_gate(fit_candidates(train_h, train_b, layers, [2]), val_h, val_b, target_fpr=0.02)
    crossed = cross_fit_gate(train_h, train_b, val_h, val_b, layers, [2], target_fpr=0.02, folds=5)
    assert plain.report["val_tpr"] < 0.5 < 0.9 < crossed.report["val_tpr"]
    assert crossed.probe.layer_index == 5 and crossed.report["val_fpr"] <= 0.02 + 1e-6
    pooled = torch.cat([train_h.layer(5), train_b.layer(5), val_h.layer(5), val_b.layer(5)])
    torch.testing.assert_close(crossed.probe.mean, pooled.mean(0))
    assert crossed.report["cross_fit"]["exported_probe_fitted_on"] == {
        "harmful_answers": 100,
        "benign_answers": 100,
    }
    with pytest.raises(ValueError, match="at least 61 validation answers"):
        cross_fit_gate(train_h, train_b, val_h, val_b, layers, [2], folds=61)


def test_check_states_subset_and_concat_renumber_answers():
    hidden = torch.arange(5.0).reshape(5, 1, 1)
    states = _states(hidden, [0, 0, 1, 2, 2], [-1], 4)  # answer 3 has no check
    part = states.subset([2, 3, 0])
    assert part.num_samples == 3 and part.sample.tolist() == [2, 2, 0, 0]  # answer 0 became 2, answer 2 became 0
    assert part.hidden.reshape(-1).tolist() == [0.0, 1.0, 3.0, 4.0]
    both = CheckStates.concat([part, states])
    assert both.num_samples == 7 and both.sample.tolist() == [2, 2, 0, 0, 3, 3, 4, 5, 5]


@pytest.mark.slow
def test_fit_with_the_callback_exports_the_calibrated_gate(tmp_path, monkeypatch):
    """A real tiny fit: the artifact carries the probe, layer and threshold the calibration chose (whatever the
    order of callbacks: calibration runs in on_train_end, export in the module's on_fit_end)."""
    monkeypatch.chdir(REPO)
    report_path = tmp_path / "gate.json"
    callback = json.dumps(
        {
            "class_path": "reminder_lightning.callbacks.probe_calibration.ProbeCalibration",
            "init_args": {
                "validation_harmful": {
                    "class_path": "reminder_lightning.data.sources.LocalRecords",
                    "init_args": {"path": "data/tiny/harmful.jsonl", "kind": "harmful", "limit": 8},
                },
                "validation_benign": {
                    "class_path": "reminder_lightning.data.sources.LocalRecords",
                    "init_args": {"path": "data/tiny/benign.jsonl", "kind": "benign", "limit": 8},
                },
                "layers": [1, -1],
                "components": [2, 3],
                "target_fpr": 0.2,
                "max_answer_tokens": 24,
                "max_train_per_class": 12,
                "cross_fit_folds": 2,
                "fit_every": 2,
                "report_path": str(report_path),
            },
        }
    )
    cli = run_fit(
        tmp_path,
        "--trainer.max_epochs=1",
        "--data.init_args.num_examples=8",
        "--model.schedule.interval=4",
        f"--trainer.callbacks+={callback}",
    )
    report = json.loads(report_path.read_text())
    art = load_reminder(cli.model.exported_path)
    assert art.probe is not None and art.probe.layer_index == report["layer"] in (1, -1)
    assert art.probe.num_components == report["components"]
    assert art.threshold == pytest.approx(report["threshold"]) and art.schedule.mode.value == "gated"
    gate = json.loads(art.metadata["gate"])
    assert gate["chosen"] == report["chosen"] and gate["candidates"].keys() == report["candidates"].keys()
    assert len(report["candidates"]) == 4  # 2 layers x 2 sizes (no trained probe in the tiny config)
    checks = report["validation"]["harmful_checks"]
    assert checks > report["validation"]["harmful_answers"]  # several check points per answer (interval 4)
    assert art.interval == 4
    assert report["cross_fit"]["folds"] == 2  # chosen out of fold, exported probe fitted on train + validation
    assert report["cross_fit"]["exported_probe_fitted_on"] == {"harmful_answers": 20, "benign_answers": 20}
    # training answers read every 2 tokens, validation answers at the checks (every 4): about twice the checks
    assert report["fit_every"] == 2
    per_answer_train = report["train_checks"]["harmful"] / report["train"]["harmful_answers"]
    assert per_answer_train > 1.5 * checks / report["validation"]["harmful_answers"]


def test_the_gate_is_fitted_on_every_listed_source_in_order(monkeypatch):
    """Fitting answers may come from several sources (SAPT's records and answers kept for the gate alone)."""
    from reminder_lightning.callbacks.probe_calibration import ProbeCalibration
    from reminder_lightning.data.sources import LocalRecords

    monkeypatch.chdir(REPO)
    val = LocalRecords("data/tiny/harmful.jsonl", "harmful", limit=2)
    first, second = (
        LocalRecords("data/tiny/benign.jsonl", "benign", limit=3),
        LocalRecords("data/tiny/benign.jsonl", "benign", limit=5),
    )
    callback = ProbeCalibration(val, val, train_benign=[first, second])
    records = callback._records(callback.train_benign, None, "benign_source", "train_benign")
    assert [r.id for r in records] == [r.id for r in first.load()] + [r.id for r in second.load()]
    with pytest.raises(ValueError, match="no train_harmful records: set `train_harmful`"):
        ProbeCalibration(val, val, train_harmful=[])._records([], None, "harmful_source", "train_harmful")
