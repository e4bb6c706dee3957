"""The prompt-tuning baseline: trained by `fit` on peft with the VLM frozen, written and read in peft's format, and
its vectors reach the model right before the answer."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from reminder_lightning.defences.base import DecodingSettings
from reminder_lightning.defences.prompt_tuning import PromptTuningDefence, load_prompt_tuning
from reminder_lightning.reminder.artifact import save_probe
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec
from tests.training.helpers import run_fit

PT = "--model.objective=reminder_lightning.defences.prompt_tuning.PromptTuningObjective"
EMPTY_PREFIX = "--data.init_args.sapt.p_empty_prefix=1.0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real tiny prompt-tuning fit (the frozen VLM's weights recorded before it)."""
    tmp = tmp_path_factory.mktemp("pt")
    base = VLMAdapter.load(VLMSpec(name_or_path="tiny:llava", dtype="float32"))
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    cli = run_fit(tmp, PT, EMPTY_PREFIX, "--trainer.max_epochs=2", "--data.init_args.num_examples=8")
    return cli, before


@pytest.mark.slow
def test_prompt_tuning_trains_only_the_vectors_and_round_trips_through_peft(trained):
    cli, before = trained
    module, path = cli.model, cli.model.exported_path
    assert path.is_dir() and {p.name for p in path.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    for name, value in module.vlm.model.state_dict().items():  # the VLM is frozen: every weight as loaded
        assert torch.equal(value, before[name]), name
    assert [n for n, p in module.named_parameters() if p.requires_grad] == ["soft_prompt.weight"]
    trained_vectors = module.soft_prompt.weight.detach().cpu()
    init = module.objective.peft_model.prompt_encoder["default"].embedding.weight
    assert init is module.soft_prompt.weight  # peft's parameter is the one the optimiser moved
    fresh = VLMAdapter.load(VLMSpec(name_or_path="tiny:llava", dtype="float32"))
    loaded = PeftModel.from_pretrained(fresh.model, str(path))  # peft's own loader
    torch.testing.assert_close(loaded.prompt_encoder["default"].embedding.weight.detach(), trained_vectors)
    config, vectors = load_prompt_tuning(path)
    assert config.num_virtual_tokens == 4 and config.base_model_name_or_path == "tiny:llava"
    torch.testing.assert_close(vectors, trained_vectors)


@pytest.mark.slow
def test_the_vectors_reach_the_model_right_before_the_answer(trained):
    cli, _ = trained
    adapter = VLMAdapter.load(VLMSpec(name_or_path="tiny:llava", dtype="float32"))
    defence = PromptTuningDefence(str(cli.model.exported_path))
    defence.setup(adapter)
    seen = []  # what the first decoder layer receives: the embeddings after every hook on the embedding table
    first = next(m for n, m in adapter.model.named_modules() if n.endswith("language_model.layers.0"))
    handle = first.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).detach()),
        with_kwargs=True,
    )
    try:
        outputs = defence.generate(None, ["How do I bake bread?"], DecodingSettings(max_new_tokens=3))
    finally:
        handle.remove()
    assert len(outputs) == 1 and outputs[0].token_ids and not outputs[0].flagged
    prompt = adapter.inputs.encode_prompt("How do I bake bread?")["input_ids"][0]
    prefill = seen[0][0]
    assert prefill.shape[0] == len(prompt) + 4  # the prompt (with the assistant header), then the 4 vectors
    _, vectors = load_prompt_tuning(cli.model.exported_path)
    torch.testing.assert_close(prefill[-4:], vectors)
    plain = adapter.model.get_input_embeddings()(prompt[None])[0]
    torch.testing.assert_close(prefill[: len(prompt)], plain)


def test_a_prompt_tuning_adapter_for_another_model_is_refused(tmp_path):
    folder = tmp_path / "pt"
    folder.mkdir()
    config = {
        "peft_type": "PROMPT_TUNING",
        "task_type": "CAUSAL_LM",
        "num_virtual_tokens": 2,
        "token_dim": 64,
        "num_transformer_submodules": 1,
        "base_model_name_or_path": "llava-hf/llava-1.5-7b-hf",
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    from safetensors.torch import save_file

    save_file({"prompt_embeddings": torch.zeros(2, 64)}, folder / "adapter_model.safetensors")
    adapter = VLMAdapter.load(VLMSpec(name_or_path="tiny:llava", dtype="float32"))
    with pytest.raises(ValueError, match="trained on 'llava-hf/llava-1.5-7b-hf'"):
        PromptTuningDefence(str(folder)).setup(adapter)
    save_file({"prompt_embeddings": torch.full((3, 64), float("nan"))}, folder / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="damaged"):
        load_prompt_tuning(folder)
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        load_prompt_tuning(tmp_path)


@pytest.mark.slow
def test_prompt_tuning_needs_empty_prefixes_and_no_probe(tmp_path):
    with pytest.raises(ValueError, match="p_empty_prefix: 1.0"):
        run_fit(tmp_path / "a", PT, "--trainer.max_epochs=1", "--data.init_args.num_examples=4")
    probe = save_probe(tmp_path / "probe.safetensors", SafetyProbe(64, 2))
    with pytest.raises(ValueError, match="remove probe_path"):
        run_fit(tmp_path / "b", PT, EMPTY_PREFIX, f"--model.probe_path={probe}", "--trainer.max_epochs=1")
