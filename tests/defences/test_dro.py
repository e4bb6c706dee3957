"""DRO on the shared fit machinery: its loss moves the prompt representation along the probes' directions, its
base state is the undefended one, and its adapter decodes through the prompt-tuning defence."""

from __future__ import annotations

import json

import pytest
import torch

from reminder_lightning.defences.base import DecodingSettings
from reminder_lightning.defences.prompt_tuning import PromptTuningDefence
from reminder_lightning.reminder.artifact import save_probe
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec
from tests.training.helpers import epoch_means, run_fit


def _probes(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 64, generator=g), torch.tensor([0.0, 1.0] * 20)
    x[:, 0] += 3 * (2 * y - 1)
    harm = save_probe(tmp_path / "harm.safetensors", SafetyProbe.fit(x, y, num_components=4))
    x[:, 1] += 3 * (2 * y - 1)
    refusal = save_probe(tmp_path / "refusal.safetensors", SafetyProbe.fit(x, 1 - y, num_components=4))
    return harm, refusal


@pytest.mark.slow
def test_dro_trains_its_directions_and_decodes_as_prompt_tuning(tmp_path):
    harm, refusal = _probes(tmp_path)
    objective = json.dumps(
        {
            "class_path": "reminder_lightning.defences.dro.DROObjective",
            "init_args": {"harmfulness_probe": str(harm), "refusal_probe": str(refusal)},
        }
    )
    cli = run_fit(
        tmp_path, f"--model.objective={objective}", "--data.init_args.sapt.p_empty_prefix=1.0",
        "--trainer.max_epochs=4", "--data.init_args.num_examples=8",
    )  # fmt: skip
    losses = epoch_means(cli, "train/harmfulness_loss")
    assert len(losses) == 4 and losses[-1] < losses[0]  # the vectors move the states the way the labels ask
    assert epoch_means(cli, "train/refusal_loss") and epoch_means(cli, "train/norm_loss")
    assert [n for n, p in cli.model.named_parameters() if p.requires_grad] == ["soft_prompt.weight"]
    path = cli.model.exported_path
    assert path.name == "dro" and (path / "adapter_config.json").is_file()
    adapter = VLMAdapter.load(VLMSpec(name_or_path="tiny:llava", dtype="float32"))
    defence = PromptTuningDefence(str(path), name="dro")
    defence.setup(adapter)
    out = defence.generate(None, ["How do I bake bread?"], DecodingSettings(max_new_tokens=2))
    assert out[0].token_ids and defence.describe()["name"] == "dro"


def test_the_base_state_is_the_undefended_one():
    """Right padding and causal attention: the last prompt token's state in the training forward pass (with the
    vectors after it) equals the state of the prompt alone."""
    adapter = VLMAdapter.load(VLMSpec(name_or_path="tiny:llava", dtype="float32"))
    enc = adapter.inputs.encode_prompt("How do I bake bread?")
    n = len(enc["input_ids"][0])
    with_vectors = adapter.inputs.append_tokens(enc, [1, 2, 3])  # anything after the prompt
    with torch.no_grad():
        a = adapter.model(**enc, output_hidden_states=True).hidden_states[-1][0, n - 1]
        b = adapter.model(**with_vectors, output_hidden_states=True).hidden_states[-1][0, n - 1]
    torch.testing.assert_close(a, b)
