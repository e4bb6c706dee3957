"""shapes: twins have the published architectures (counted on the meta device: no 7B allocation) and load
through the same path as every model (checked on a small twin of the same kind)."""

from __future__ import annotations

import pytest
import torch

from reminder_lightning.vlm.shapes import SHAPES, ensure_shapes_model, is_random_weights


@pytest.mark.parametrize(("name", "billions"), [("llava-1.5-7b", 7.06), ("qwen2-vl-7b", 8.29)])
def test_shapes_have_the_published_size(name, billions, tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText

    folder = ensure_shapes_model(name, tmp_path)
    assert is_random_weights(folder) and not list(folder.glob("*.safetensors"))
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(folder))
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.02)
    assert name in SHAPES


def test_a_random_weight_folder_loads_through_the_adapter(tmp_path, monkeypatch):
    from reminder_lightning.vlm import shapes
    from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec
    from reminder_lightning.vlm.tiny.llava import llava_parts

    monkeypatch.setattr(shapes, "_parts", lambda name: llava_parts())  # a small config of the same kind
    monkeypatch.setattr(shapes, "SHAPES", ("small",))
    monkeypatch.setenv("REMINDER_TINY_CACHE", str(tmp_path))
    adapter = VLMAdapter.load(VLMSpec(name_or_path="shapes:small", dtype="float32"))
    again = VLMAdapter.load(VLMSpec(name_or_path="shapes:small", dtype="float32"))
    assert adapter.hidden_size == 64 and torch.equal(
        adapter.model.get_input_embeddings().weight, again.model.get_input_embeddings().weight
    )  # seeded


def test_unknown_shapes_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown shapes model 'gpt-9'"):
        ensure_shapes_model("gpt-9", tmp_path)
