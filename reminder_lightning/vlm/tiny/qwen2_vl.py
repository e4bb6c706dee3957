"""Tiny random Qwen2-VL: ViT with 2x2 patch merging, dynamic resolution, M-RoPE Qwen2 LM.

:func:`qwen_processor` and :func:`qwen_token_config` are what Qwen2-VL and Qwen2.5-VL share (the tokenizer's
special tokens, the image processor, the chat template, the token ids the config names); each family's
``*_parts`` adds its own config.
"""

from __future__ import annotations

import torch

from reminder_lightning.vlm.processors import processor_without_torchvision, torchvision_available
from reminder_lightning.vlm.tiny.tokenizers import (
    INIT_RANGE,
    QWEN2_VL_CHAT_TEMPLATE,
    TINY_TEXT,
    _padded_vocab,
    train_tokenizer,
)

TINY_QWEN_TEXT = {
    **TINY_TEXT,
    "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
}
TINY_VISION = {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2}
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
#: Patch geometry of every Qwen-VL vision tower (the image processor's too): 14 px patches, 2x2 merged, 2 frames.
QWEN_PATCHES = {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3}


def qwen_processor(processor_cls, pixels: tuple[int, int]):
    """A real ``processor_cls`` (``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor``): the Qwen special tokens on the tiny
    BPE, PIL ``Qwen2VLImageProcessor`` with ``pixels = (min_pixels, max_pixels)``, the Qwen chat template."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = train_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.padding_side = "left"
    image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels[0], max_pixels=pixels[1])
    parts = {"image_processor": image_processor, "tokenizer": tokenizer, "chat_template": QWEN2_VL_CHAT_TEMPLATE}
    if torchvision_available():
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        return processor_cls(video_processor=Qwen2VLVideoProcessor(), **parts)
    return processor_without_torchvision(processor_cls, **parts)


def qwen_token_config(tokenizer, vocab_size: int | None, init_range: float) -> tuple[dict, dict]:
    """``(text_config entries, top-level config entries)`` that name the tokenizer's ids: EOS / pad / BOS, the
    vocabulary (padded to a multiple of 64 unless given), the image, video and vision start / end tokens."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = {
        "vocab_size": vocab_size or _padded_vocab(tokenizer),
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "initializer_range": init_range,
    }
    top = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "initializer_range": init_range,
    }
    return text, top


def qwen2_vl_parts(
    vision: dict | None = None,
    text: dict | None = None,
    vocab_size: int | None = None,
    pixels: tuple[int, int] = (56 * 56, 112 * 112),
    init_range: float = INIT_RANGE,
):
    """``(Qwen2VLConfig, processor)`` of the Qwen2-VL layout with the given sizes (default: tiny); no weights."""
    from transformers import Qwen2VLConfig, Qwen2VLProcessor

    processor = qwen_processor(Qwen2VLProcessor, pixels)
    token_text, token_top = qwen_token_config(processor.tokenizer, vocab_size, init_range)
    config = Qwen2VLConfig(
        text_config={**(text or TINY_QWEN_TEXT), **token_text},
        vision_config={**(vision or TINY_VISION), **QWEN_PATCHES},
        **token_top,
    )
    return config, processor


def build_tiny_qwen2_vl(seed: int = 0):
    """Qwen2-VL layout: ViT with 2x2 patch merging, dynamic resolution (56-112 px), M-RoPE Qwen2 LM."""
    from transformers import Qwen2VLForConditionalGeneration

    config, processor = qwen2_vl_parts()
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    return model, processor
