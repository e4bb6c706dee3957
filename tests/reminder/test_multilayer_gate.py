"""The multi-layer gate: a probe that reads several ``hidden_states`` entries concatenated, so an attacker must move
every one of them. It reads each configured layer (and no other), in generation, calibration and artifacts."""

from __future__ import annotations

import json

import pytest
import torch

from reminder_lightning.cli import main
from reminder_lightning.reminder import ReminderGenerator, load_reminder, save_reminder
from reminder_lightning.reminder.artifact import load_probe, save_probe
from reminder_lightning.reminder.calibration import CheckStates, fit_candidates, flat_layers
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.gate_selection import select_gate
from tests.reminder.test_generation import PROMPTS, _images, _soft
from tests.training.helpers import REPO


def _fitted(layers: list[int], hidden: int = 8, seed: int = 0) -> SafetyProbe:
    """A probe over ``layers`` whose classes differ in every layer's first dimension."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, len(layers), hidden, generator=g)
    y = (torch.arange(64) % 2).float()
    x[:, :, 0] += (2 * y - 1)[:, None] * 3
    return SafetyProbe.fit(x.reshape(64, -1), y, num_components=4, layer=layers)


def test_a_multi_layer_probe_reads_each_configured_layer_and_no_other():
    probe = _fitted([1, 3])
    assert probe.layers == [1, 3] and probe.layer_spec == [1, 3] and probe.hidden_size == 8
    with pytest.raises(ValueError, match="several"):
        _ = probe.layer_index
    g = torch.Generator().manual_seed(1)
    states = [torch.randn(2, 5, 8, generator=g) for _ in range(5)]
    torch.testing.assert_close(probe.select(states), torch.cat([states[1], states[3]], -1))
    base = probe.logit(probe.select(states))
    for layer in range(5):
        moved = list(states)
        moved[layer] = states[layer] + 1.0
        changed = not torch.allclose(probe.logit(probe.select(moved)), base)
        assert changed == (layer in (1, 3)), layer
    with pytest.raises(ValueError, match=r"hidden_states\[3\]"):
        probe.select(states[:3])
    with pytest.raises(ValueError, match="distinct"):
        SafetyProbe(8, 2, layer=[2, 2])


def test_multi_layer_probes_survive_artifacts_and_a_broken_layer_tensor_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    probe = _fitted([2, -1])
    x = torch.randn(6, 16)
    art = load_reminder(save_reminder(tmp_path / "r.safetensors", torch.randn(2, 8), probe))
    assert art.probe.layers == [2, -1] and art.probe.hidden_size == 8
    torch.testing.assert_close(art.probe(x), probe(x))
    single = _fitted([4])  # a list of one reads that layer alone
    assert load_probe(save_probe(tmp_path / "one.safetensors", single)).layers == [4]
    tensors = load_file(str(save_probe(tmp_path / "p.safetensors", probe)))
    assert load_probe(tmp_path / "p.safetensors").layers == [2, -1]
    save_file({**tensors, "probe.layer": torch.tensor([1, 2, 3])}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"bad.safetensors.*probe.mean.*3 layers"):
        load_probe(tmp_path / "bad.safetensors")


def test_calibration_offers_concatenated_layers_as_one_candidate():
    g = torch.Generator().manual_seed(0)

    def states(n: int, shift: float) -> CheckStates:
        hidden = torch.randn(n, 2, 8, generator=g)
        hidden[:, :, 0] += shift
        return CheckStates(hidden, torch.arange(n), torch.zeros(n, dtype=torch.long), [5, -1], n)

    specs = [5, [5, -1]]
    assert flat_layers(specs + [[-1, 7]]) == [5, -1, 7]
    candidates = fit_candidates(states(40, -3), states(40, 3), specs, [2])
    assert set(candidates) == {"layer5_pca2", "layers5+-1_pca2"}
    assert candidates["layers5+-1_pca2"].layers == [5, -1]
    choice = select_gate(candidates, states(30, -3), states(30, 3), target_fpr=0.05)
    assert choice.report["candidates"]["layers5+-1_pca2"]["layer"] == [5, -1]
    json.dumps(choice.report)  # the report (and the artifact's metadata) stays plain JSON


def test_generation_checks_read_the_concatenated_layers(adapters):
    adapter = adapters["llava"]
    h = adapter.hidden_size
    g = torch.Generator().manual_seed(3)
    probe = SafetyProbe(h, 3, layer=[1, -1])
    probe.components.copy_(torch.randn(3, 2 * h, generator=g) / (2 * h) ** 0.5)
    probe.coef.copy_(torch.randn(3, generator=g) * 0.5)  # P(safe) away from 0 and 1, so the layers tell apart
    gen = ReminderGenerator(adapter, _soft(adapter), probe)
    images = _images()[:1]
    out = gen.generate(images, PROMPTS[:1], mode="gated", threshold=0.0, interval=8, max_new_tokens=9)[0]
    step, p_safe = out.checks[0]
    builder = adapter.inputs
    enc = builder.append_tokens(
        builder.encode_prompt(PROMPTS[0], images[0]), out.token_ids[:step] + gen.injector.placeholder_ids
    )
    with torch.no_grad(), gen.injector:
        states = adapter.model(**enc, output_hidden_states=True).hidden_states
    assert p_safe == pytest.approx(float(probe(torch.cat([states[1], states[-1]], -1)[0, -1])), abs=1e-4)
    assert p_safe != pytest.approx(float(probe(torch.cat([states[-1], states[1]], -1)[0, -1])), abs=1e-3)


def test_the_probe_command_calibrates_a_multi_layer_gate_into_the_artifact(tmp_path, monkeypatch, adapters):
    monkeypatch.chdir(REPO)
    reminder = save_reminder(
        tmp_path / "reminder.safetensors",
        torch.randn(4, adapters["llava"].hidden_size) * 0.1,
        None,
        {"interval": 8, "threshold": 0.2, "model_type": "llava"},
    )

    def source(kind: str, first: int, limit: int) -> str:
        path = tmp_path / f"{kind}_{first}.jsonl"
        lines = (REPO / f"data/tiny/{kind}.jsonl").read_text().splitlines()[first : first + limit]
        path.write_text("\n".join(lines) + "\n")
        init = {"path": str(path), "kind": kind}
        return json.dumps({"class_path": "reminder_lightning.data.sources.LocalRecords", "init_args": init})

    args = ["probe", "--config", str(REPO / "configs/probe_tiny.yaml"), f"--harmful={source('harmful', 0, 12)}"]
    args += [f"--benign={source('benign', 0, 12)}", f"--validation_harmful={source('harmful', 12, 8)}"]
    args += [f"--validation_benign={source('benign', 12, 8)}", f"--output={tmp_path / 'gate.safetensors'}"]
    args += ["--position=reminder", "--answers=true", "--max_new_tokens=24", f"--reminder={reminder}"]
    args += [f"--reminder_output={tmp_path / 'gated.safetensors'}", "--layers=[[1, -1]]", "--components=[2]"]
    report = main(args + ["--target_fpr=0.125"])
    assert report["chosen"] == "layers1+-1_pca2" and report["layer"] == [1, -1]
    art = load_reminder(tmp_path / "gated.safetensors")
    assert art.probe.layers == [1, -1] and json.loads(art.metadata["gate"])["layer"] == [1, -1]
    out = ReminderGenerator(adapters["llava"], art.soft_prompt_module(), art.probe).generate(
        _images()[:1], PROMPTS[:1], mode="gated", threshold=art.threshold, interval=8, max_new_tokens=9
    )
    assert len(out[0].checks) == 1
