"""Tiny random Qwen2.5-VL: Qwen2-VL's tokens, processor and M-RoPE; a ViT with windowed attention and a gated MLP."""

from __future__ import annotations

import torch

from reminder_lightning.vlm.tiny.qwen2_vl import QWEN_PATCHES, TINY_QWEN_TEXT, qwen_processor, qwen_token_config
from reminder_lightning.vlm.tiny.tokenizers import INIT_RANGE

#: Windows of 56 px (2x2 merged tokens) where the real model has 112 px (4x4): the tiny images (56-112 px a side,
#: 2x2 to 4x4 merged tokens) span one to four windows, as real ones span several. Layer 0 attends within windows,
#: layer 1 over the whole image (the real model: full attention in every 8th layer). The tower is initialised with
#: the tiny models' wide ``INIT_RANGE`` (Qwen2-VL's twin keeps the default 0.02), so which tokens share a window
#: visibly changes the image features.
TINY_VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "window_size": 56,
    "fullatt_block_indexes": [1],
}


def qwen2_5_vl_parts(
    vision: dict | None = None,
    text: dict | None = None,
    vocab_size: int | None = None,
    pixels: tuple[int, int] = (56 * 56, 112 * 112),
    init_range: float = INIT_RANGE,
):
    """``(Qwen2_5_VLConfig, processor)`` of the Qwen2.5-VL layout with the given sizes (default: tiny); no weights.

    Unlike Qwen2-VL's, the vision config's ``hidden_size`` is the ViT width; the merger's output width
    (``out_hidden_size``) is the language model's ``hidden_size``.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor

    processor = qwen_processor(Qwen2_5_VLProcessor, pixels)
    text = text or TINY_QWEN_TEXT
    token_text, token_top = qwen_token_config(processor.tokenizer, vocab_size, init_range)
    config = Qwen2_5_VLConfig(
        text_config={**text, **token_text},
        vision_config={
            **(vision or TINY_VISION),
            **QWEN_PATCHES,
            "out_hidden_size": text["hidden_size"],
            "initializer_range": init_range,
        },
        **token_top,
    )
    return config, processor


def build_tiny_qwen2_5_vl(seed: int = 0):
    """Qwen2.5-VL layout: windowed-attention ViT (56 px windows) with 2x2 merging, 56-112 px images, M-RoPE LM."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    config, processor = qwen2_5_vl_parts()
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return model, processor
