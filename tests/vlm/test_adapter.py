import pytest
import torch

from reminder_lightning.vlm.adapter import PromptBuilder, VLMSpec
from reminder_lightning.vlm.collate import collate_encodings
from reminder_lightning.vlm.processors import load_processor, torchvision_available
from reminder_lightning.vlm.tiny import ensure_tiny_model
from tests.conftest import FAMILIES, FAMILY_NAMES

PROCESSORS = {
    "llava": "LlavaProcessor",
    "llava_next": "LlavaNextProcessor",
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "gemma3": "Gemma3Processor",
    "idefics3": "Idefics3Processor",
}
MODELS = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_models_load_through_auto_classes(adapters, family):
    adapter = adapters[family]
    assert type(adapter.model).__name__ == MODELS[family]
    assert type(adapter.processor).__name__ == PROCESSORS[family]
    assert adapter.family.name == FAMILY_NAMES[family]
    assert adapter.hidden_size == adapter.input_embeddings().weight.shape[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_has_image_tokens_only_with_image(adapters, family, red_image):
    builder = adapters[family].inputs
    with_image = builder.encode_prompt("What is shown?", red_image)
    text_only = builder.encode_prompt("What is shown?", None)
    image_ids = torch.tensor(sorted(builder.image_token_ids))
    assert torch.isin(with_image["input_ids"], image_ids).sum() > 0
    assert torch.isin(text_only["input_ids"], image_ids).sum() == 0
    assert "pixel_values" in with_image and "pixel_values" not in text_only
    # the rendered template asks the assistant to answer
    assert builder.prompt_text("hi", False) != builder.prompt_text("hi", True)


def test_bos_added_once(adapters):
    for family in FAMILIES:
        builder = adapters[family].inputs
        ids = builder.encode_prompt("hello", None)["input_ids"][0].tolist()
        bos = builder.tokenizer.bos_token_id
        if bos is not None and bos != builder.tokenizer.pad_token_id:
            assert ids.count(bos) <= 1, family


@pytest.mark.parametrize("family", FAMILIES)
def test_append_tokens_extends_every_token_tensor(adapters, family, red_image):
    builder = adapters[family].inputs
    enc = builder.encode_prompt("Describe it.", red_image)
    keys = builder.token_keys(enc)
    out = builder.append_tokens(enc, [5, 6, 7])
    for key in keys:
        assert out[key].shape[1] == enc[key].shape[1] + 3
        assert torch.equal(out[key][:, :-3], enc[key])
    assert out["input_ids"][0, -3:].tolist() == [5, 6, 7]
    assert out["attention_mask"][0, -3:].tolist() == [1, 1, 1]
    for key in set(keys) - {"input_ids", "attention_mask"}:  # token types of text are 0
        assert out[key][0, -3:].tolist() == [0, 0, 0]
    assert torch.equal(out["pixel_values"], enc["pixel_values"])


def test_collate_pads_both_sides_and_concatenates_images(adapters, red_image):
    builder = adapters["qwen2_vl"].inputs
    a = builder.encode_prompt("A long question about the picture here?", red_image)
    b = builder.encode_prompt("Hi", None)
    keys = builder.token_keys(a)
    for side in ("right", "left"):
        batch = collate_encodings([a, b], keys, builder.pad_values(), padding_side=side)
        la, lb = a["input_ids"].shape[1], b["input_ids"].shape[1]
        assert batch["input_ids"].shape == (2, max(la, lb))
        assert batch["attention_mask"].sum(1).tolist() == [la, lb]
        row = batch["input_ids"][1]
        kept = row[:lb] if side == "right" else row[-lb:]
        assert torch.equal(kept, b["input_ids"][0])
    assert torch.equal(batch["pixel_values"], a["pixel_values"])  # only the sample with an image
    with pytest.raises(ValueError, match="padding_side"):
        collate_encodings([a], keys, {}, padding_side="middle")


def test_placeholder_ids_are_outside_the_vocabulary(adapters):
    for family in FAMILIES:
        adapter = adapters[family]
        ids = adapter.inputs.placeholder_ids(4)
        assert min(ids) == adapter.input_embeddings().weight.shape[0]
        assert len(set(ids)) == 4


def test_unknown_dtype_and_tiny_family_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown dtype"):
        VLMSpec("tiny:llava", dtype="float8").torch_dtype()
    with pytest.raises(ValueError, match="Unknown tiny model family"):
        PromptBuilder.load(VLMSpec("tiny:nope"))


@pytest.mark.skipif(torchvision_available(), reason="the fallback only runs without torchvision")
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_processor_without_torchvision_refuses_video(family):
    path = ensure_tiny_model(family)
    processor = load_processor(str(path))
    assert type(processor).__name__ == PROCESSORS[family]
    with pytest.raises(RuntimeError, match="torchvision"):
        processor.video_processor(videos=[])


def test_tiny_qwen2_5_vl_attends_in_windows_at_the_test_image_sizes(adapters, monkeypatch):
    """The tiny Qwen2.5-VL's first ViT layer attends within 56 px windows (2x2 merged tokens): a 70x50 image (resized
    to 56x56) is one window, so full attention in every layer gives the same features; a 90x60 one (56x84) spans two,
    so it does not. Noise images: on a plain colour every patch is alike and windows cannot matter."""
    import numpy as np
    from PIL import Image

    adapter = adapters["qwen2_5_vl"]
    visual = adapter.model.model.visual
    assert visual.fullatt_block_indexes == [1] and visual.window_size == 56
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((50, 70), (60, 90))]

    def features(image):
        enc = adapter.inputs.encode_prompt("What is shown?", image)
        with torch.no_grad():
            return adapter.model.model.get_image_features(
                enc["pixel_values"], enc["image_grid_thw"]
            ).pooler_output[0]

    windowed = [features(image) for image in images]
    monkeypatch.setattr(visual, "fullatt_block_indexes", list(range(len(visual.blocks))))
    full = [features(image) for image in images]
    assert [len(w) for w in windowed] == [4, 6]  # merged tokens: 2x2 and 2x3
    torch.testing.assert_close(windowed[0], full[0], rtol=1e-5, atol=1e-5)
    assert float((windowed[1] - full[1]).abs().max()) > 0.1


def test_tiny_llava_next_batches_images_with_different_tile_counts_as_its_processor(adapters):
    """The two test images land on different grids of the tiny LLaVA-NeXT: 70x50 on 1x2 tiles, 90x60 on 2x2. Each
    takes the base view's 16 tokens, its tiles' tokens after unpadding and a newline per row; a left-padded batch of
    both (tile axis zero-padded) is what the processor gives for the pair, and the model packs one feature per token."""
    from PIL import Image

    from reminder_lightning.reminder.generation.steps import encode_batch

    adapter = adapters["llava_next"]
    builder = adapter.inputs
    images = [Image.new("RGB", (70, 50), "red"), Image.new("RGB", (90, 60), "blue")]
    single = [builder.encode_prompt("What is shown?", image) for image in images]
    image_id = adapter.model.config.image_token_id
    assert [e["pixel_values"].shape[1] for e in single] == [3, 5]  # the base view and 2 or 4 tiles
    tokens = [16 + 4 * 6 + 4, 16 + 6 * 8 + 6]  # base + unpadded rows x columns + newlines: 44, 70
    assert [int((e["input_ids"] == image_id).sum()) for e in single] == tokens
    batch = encode_batch(adapter, images, ["What is shown?", "What is shown?"])
    text = builder.prompt_text("What is shown?", has_image=True)
    reference = builder.processor(
        text=[text, text], images=images, return_tensors="pt", padding=True, padding_side="left"
    )
    for key in ("input_ids", "attention_mask", "pixel_values", "image_sizes"):
        assert torch.equal(batch[key], reference[key]), key
    with torch.no_grad():
        features = adapter.model.model.get_image_features(
            batch["pixel_values"], batch["image_sizes"]
        ).pooler_output
    assert [len(f) for f in features] == tokens


def test_collate_refuses_image_tensors_that_differ_beyond_the_view_axis():
    a, b = {"input_ids": torch.ones(1, 2, dtype=torch.long)}, {"input_ids": torch.ones(1, 3, dtype=torch.long)}
    a["pixel_values"], b["pixel_values"] = torch.rand(1, 3, 3, 8, 8), torch.rand(1, 5, 3, 8, 8)
    batch = collate_encodings([a, b], ["input_ids"], {})
    assert batch["pixel_values"].shape == (2, 5, 3, 8, 8) and not batch["pixel_values"][0, 3:].any()
    b["pixel_values"] = torch.rand(1, 5, 3, 8, 9)
    with pytest.raises(ValueError, match="only their second dimension"):
        collate_encodings([a, b], ["input_ids"], {})


def test_tiny_idefics3_batches_images_with_different_crop_counts_as_its_processor(adapters):
    """The two test images split differently in the tiny Idefics3: 70x50 (resized to 168x120) into 3x3 crops, 90x60
    (168x112) into 2x3, each plus a global view, 4 image tokens per crop. A left-padded batch of both (crop axis of
    ``pixel_values`` and ``pixel_attention_mask`` zero-padded) is what the processor gives for the pair, and the
    model keeps one feature per image token (the padded crops are dropped)."""
    from PIL import Image

    from reminder_lightning.reminder.generation.steps import encode_batch

    adapter = adapters["idefics3"]
    builder = adapter.inputs
    images = [Image.new("RGB", (70, 50), "red"), Image.new("RGB", (90, 60), "blue")]
    single = [builder.encode_prompt("What is shown?", image) for image in images]
    image_id = adapter.model.config.image_token_id
    assert [e["pixel_values"].shape[1] for e in single] == [10, 7]  # 3x3 and 2x3 crops + the global view
    assert [int((e["input_ids"] == image_id).sum()) for e in single] == [40, 28]
    batch = encode_batch(adapter, images, ["What is shown?", "What is shown?"])
    text = builder.prompt_text("What is shown?", has_image=True)
    reference = builder.processor(
        text=[text, text], images=images, return_tensors="pt", padding=True, padding_side="left"
    )
    for key in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask"):
        assert torch.equal(batch[key], reference[key]), key
    with torch.no_grad():
        features = adapter.model.model.get_image_features(
            batch["pixel_values"], batch["pixel_attention_mask"]
        ).pooler_output
    assert [len(f) for f in features] == [40, 28]
