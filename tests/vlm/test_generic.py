"""The generic path: a model type with no registered family runs where it follows the conventions, and fails
early, naming its model type and what is missing, where it does not (docs/guide.md, "Supported families")."""

import pytest
import torch
from PIL import Image

from reminder_lightning.reminder import ReminderGenerator, SoftPrompt
from reminder_lightning.reminder.generation import steps
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec
from reminder_lightning.vlm.families import VLMFamily, known_families, require_supported

PROMPTS = ["What is in the image please?", "Hi", "Describe this long picture in detail now"]


def _tiny_vipllava(path, chat_template: bool):
    """A real transformers VLM with no family here: VipLlava (model_type ``vipllava``), LLaVA's layout (CLIP tower,
    LlavaProcessor, Llama LM) with features from several vision layers; saved with or without a chat template."""
    from transformers import CLIPVisionConfig, LlamaConfig, VipLlavaConfig, VipLlavaForConditionalGeneration

    from reminder_lightning.vlm.tiny.llava import TINY_VISION
    from reminder_lightning.vlm.tiny.tokenizers import (
        INIT_RANGE,
        LLAVA_CHAT_TEMPLATE,
        TINY_TEXT,
        _padded_vocab,
        llama_style_tokenizer,
        llava_processor,
    )

    tokenizer = llama_style_tokenizer()
    processor = llava_processor(
        tokenizer, TINY_VISION["image_size"], LLAVA_CHAT_TEMPLATE if chat_template else None
    )
    text = LlamaConfig(
        vocab_size=_padded_vocab(tokenizer),
        **TINY_TEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=INIT_RANGE,
    )
    config = VipLlavaConfig(
        vision_config=CLIPVisionConfig(**TINY_VISION),
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layers=[-2, -1],
    )
    torch.manual_seed(0)
    VipLlavaForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def test_an_unregistered_llava_layout_model_runs_through_the_generic_path_exactly(tmp_path):
    assert "vipllava" not in known_families()
    adapter = VLMAdapter.load(VLMSpec(_tiny_vipllava(tmp_path / "vipllava", True), dtype="float32"))
    assert adapter.family.name == "generic" and adapter.model.config.model_type == "vipllava"
    soft = SoftPrompt(4, adapter.hidden_size)
    soft.initialize("random", adapter.input_embeddings(), seed=1)
    images = [Image.new("RGB", (70, 50), "red"), None, Image.new("RGB", (90, 60), "blue")]
    enc = steps.encode_batch(adapter, images, PROMPTS)
    with torch.no_grad():
        reference = adapter.model.generate(**enc, max_new_tokens=20, do_sample=False)
    never = ReminderGenerator(adapter, soft, None).generate(images, PROMPTS, mode="never", max_new_tokens=20)
    for i, out in enumerate(never):
        assert len(out.token_ids) > 0
        assert out.token_ids == reference[i, enc["input_ids"].shape[1] :].tolist()[: len(out.token_ids)]


def test_an_unregistered_model_without_a_chat_template_fails_naming_its_type_and_the_template(tmp_path):
    path = _tiny_vipllava(tmp_path / "vipllava", False)
    with pytest.raises(ValueError, match=r"model_type 'vipllava' \(no registered family.*chat template"):
        VLMAdapter.load(VLMSpec(path, dtype="float32"))


def test_multimodal_rope_without_a_family_fails_naming_the_positions(adapters):
    """Qwen2-VL's positions are 3-D (M-RoPE from its get_rope_index): the generic family, as a model type without a
    registered family would get, refuses it; its own family computes them."""
    adapter = adapters["qwen2_vl"]
    builder = adapter.inputs
    with pytest.raises(
        ValueError, match=r"model_type 'qwen2_vl' \(no registered family.*1-D positions.*get_rope_index"
    ):
        require_supported(VLMFamily(), builder.config, builder.processor, "tiny:qwen2_vl", adapter.model)
    assert adapter.family.missing(builder.config, builder.processor, adapter.model) == []
