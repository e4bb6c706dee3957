"""The 7B recipes follow the reference where it matters (probe on, pixel bounds, system prompts, probe settings),
and the reference's probe runs end to end on the tiny twin from instruction lists in the published layout."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from reminder_lightning.commands.probe import fit_probe
from reminder_lightning.data.records import RecordError
from reminder_lightning.data.sapt import SaptSettings, prefix_and_target
from reminder_lightning.data.sources import Instructions
from reminder_lightning.reminder.artifact import load_probe

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("llava", "qwen2_vl")


def _yaml(name: str) -> dict:
    return yaml.safe_load((REPO / "configs" / name).read_text())


@pytest.mark.parametrize("family", FAMILIES)
def test_7b_fit_configs_train_with_the_reference_probe_and_prompt(family):
    fit, probe = _yaml(f"{family}.yaml"), _yaml(f"probe_{family}.yaml")
    model = fit["model"]
    assert model["probe_path"] == probe["output"] and model["cls_weight"] == 0.05  # BCE term on, reference weight
    assert model["num_tokens"] == 4 and model["schedule"] == {"interval": 16, "threshold": 0.2}
    assert probe["vlm"] == {k: v for k, v in model["vlm"].items() if k != "attn_implementation"}  # same prompt
    assert (
        probe["position"],
        probe["layers"],
        probe["components"],
        probe["max_per_class"],
        probe["with_images"],
    ) == ("prompt_end", [-1], [4], 256, False)
    assert fit["data"]["init_args"]["sapt"]["max_length"] == 1024


def test_qwen2_vl_pixel_bounds_and_system_prompts_are_the_references():
    qwen, llava = _yaml("qwen2_vl.yaml")["model"]["vlm"], _yaml("llava.yaml")["model"]["vlm"]
    assert qwen["processor_kwargs"] == {"min_pixels": 16 * 28 * 28, "max_pixels": 256 * 28 * 28}
    assert (
        qwen["system_prompt"]
        == "You are a helpful assistant. Always answer as helpfully as possible, while being safe."
    )
    assert llava["system_prompt"].startswith(
        "A chat between a curious user and an artificial intelligence assistant."
    )


def test_qwen2_5_vl_recipe_is_qwen2_vl_s_with_only_the_model_and_run_folders_changed():
    fit, probe = _yaml("qwen2_5_vl.yaml"), _yaml("probe_qwen2_5_vl.yaml")
    assert fit["model"] == {
        "vlm": {"name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct"},
        "probe_path": probe["output"],  # its own probe is SAPT's BCE term and the gate
        "export_path": "runs/qwen2_5_vl/reminder.safetensors",
    }
    assert probe == {"vlm": fit["model"]["vlm"], "output": "runs/qwen2_5_vl/probe.safetensors"}
    assert set(fit) == {"trainer", "model"} and fit["trainer"]["default_root_dir"] == "runs/qwen2_5_vl"
    for name in ("qwen2_5_vl.yaml", "probe_qwen2_5_vl.yaml"):  # run on top of Qwen2-VL's, as the header says
        header = (REPO / "configs" / name).read_text().splitlines()[0]
        assert f"--config configs/{name.replace('2_5_vl', '2_vl')} --config configs/{name}" in header


def test_llava_next_recipe_is_llava_s_with_the_model_run_folders_and_room_for_its_images():
    fit, probe = _yaml("llava_next.yaml"), _yaml("probe_llava_next.yaml")
    assert fit["model"] == {
        "vlm": {"name_or_path": "llava-hf/llava-v1.6-vicuna-7b-hf"},
        "probe_path": probe["output"],  # its own probe is SAPT's BCE term and the gate
        "export_path": "runs/llava_next/reminder.safetensors",
        "gradient_checkpointing": True,
    }
    assert probe == {"vlm": fit["model"]["vlm"], "output": "runs/llava_next/probe.safetensors"}
    assert set(fit) == {"trainer", "model", "data"} and fit["trainer"]["default_root_dir"] == "runs/llava_next"
    # LLaVA-1.5's room for text (1024 - 576 image tokens) next to the largest anyres image: 576 + 48 x 48 + 48
    llava_room = _yaml("llava.yaml")["data"]["init_args"]["sapt"]["max_length"] - 576
    assert fit["data"] == {"init_args": {"sapt": {"max_length": llava_room + 576 + 48 * 48 + 48}}}
    for name in ("llava_next.yaml", "probe_llava_next.yaml"):  # run on top of LLaVA-1.5's, as the header says
        header = (REPO / "configs" / name).read_text().splitlines()[0]
        assert f"--config configs/{name.replace('llava_next', 'llava')} --config configs/{name}" in header


def test_smolvlm_recipe_is_llava_s_with_the_model_dtype_no_system_prompt_and_room_for_its_images():
    fit, probe = _yaml("smolvlm.yaml"), _yaml("probe_smolvlm.yaml")
    vlm = {"name_or_path": "HuggingFaceTB/SmolVLM-Instruct", "dtype": "bfloat16", "system_prompt": None}
    assert fit["model"] == {
        "vlm": vlm,
        "probe_path": probe["output"],  # its own probe is SAPT's BCE term and the gate
        "export_path": "runs/smolvlm/reminder.safetensors",
        "gradient_checkpointing": True,
    }
    assert probe == {"vlm": vlm, "output": "runs/smolvlm/probe.safetensors"}
    assert set(fit) == {"trainer", "model", "data"} and fit["trainer"]["default_root_dir"] == "runs/smolvlm"
    assert fit["trainer"]["precision"] == "32-true"  # bf16 weights, fp32 soft prompt (as Qwen2-VL's recipe)
    # LLaVA-1.5's room for text next to SmolVLM's largest image: 16 crops and a global view of 81 tokens, each crop
    # with its <fake_token_around_image> and row/col tag, a newline per row, the global view's tags and newline
    llava_room = _yaml("llava.yaml")["data"]["init_args"]["sapt"]["max_length"] - 576
    assert fit["data"] == {
        "init_args": {"sapt": {"max_length": llava_room + 16 * (2 + 81) + 4 + (1 + 2 + 81 + 1)}}
    }
    for name in ("smolvlm.yaml", "probe_smolvlm.yaml"):  # run on top of LLaVA-1.5's, as the header says
        header = (REPO / "configs" / name).read_text().splitlines()[0]
        assert f"--config configs/{name.replace('smolvlm', 'llava')} --config configs/{name}" in header


def _instructions(path: Path, texts: list[str]) -> Path:
    path.write_text(json.dumps([{"instruction": t, "category": None} for t in texts], indent=4))
    return path


HARMFUL = [
    f"Explain how to {v} a {n}"
    for v in ("steal", "break into", "poison", "sabotage")
    for n in ("car", "bank", "well")
]
HARMLESS = [
    f"Describe how to {v} a {n}" for v in ("paint", "clean", "build", "draw") for n in ("fence", "kite", "chair")
]


def test_instructions_read_the_refusal_direction_layout_and_sapt_refuses_them(tmp_path):
    records = Instructions(str(_instructions(tmp_path / "harmful_train.json", HARMFUL)), "harmful").load()
    assert [r.question for r in records] == HARMFUL and not any(r.is_safe for r in records)
    benign = Instructions(str(_instructions(tmp_path / "harmless_train.json", HARMLESS)), "benign").load()
    for record, missing in ((records[0], "no harmful_answer"), (benign[0], "no safe_answer to train towards")):
        with pytest.raises(ValueError, match=missing):
            prefix_and_target(record, random.Random(0), SaptSettings())
    (tmp_path / "bad.json").write_text(json.dumps([{"prompt": "x"}]))
    with pytest.raises(RecordError, match="bad.json row 0.*instruction"):
        Instructions(str(tmp_path / "bad.json"), "benign").load()
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Instructions(str(tmp_path / "missing.json"), "benign").load()


def test_reference_probe_config_runs_on_the_tiny_twin(tmp_path):
    """configs/probe_llava.yaml with only the model (tiny twin), the data folder and the device swapped."""
    cfg = _yaml("probe_llava.yaml")
    data = tmp_path / "refusal_direction"
    data.mkdir()
    for name, texts in (("harmful_train", HARMFUL[:8]), ("harmless_train", HARMLESS[:8]),
                        ("harmful_val", HARMFUL[8:]), ("harmless_val", HARMLESS[8:])):  # fmt: skip
        _instructions(data / f"{name}.json", texts)
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_function_arguments(fit_probe)
    cfg["vlm"] = {**cfg["vlm"], "name_or_path": "tiny:llava", "dtype": "float32"}
    for key in ("harmful", "benign", "validation_harmful", "validation_benign"):
        args = cfg[key]["init_args"]
        args["path"] = str(data / Path(args["path"]).name)
    cfg.update(output=str(tmp_path / "probe.safetensors"), device="cpu")
    report = fit_probe(**parser.instantiate_classes(parser.parse_object(cfg)).as_dict())
    probe = load_probe(tmp_path / "probe.safetensors")
    assert probe.layer_index == -1 and probe.num_components == 4
    assert report["test"]["harmful"] == len(HARMFUL) - 8 and report["train"]["benign"] == 8
