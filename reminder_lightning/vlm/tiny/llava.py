"""Tiny random LLaVA-1.5: CLIP vision tower, MLP projector, Llama LM."""

from __future__ import annotations

import torch

from reminder_lightning.vlm.tiny.tokenizers import (
    INIT_RANGE,
    LLAVA_CHAT_TEMPLATE,
    TINY_TEXT,
    _padded_vocab,
    llama_style_tokenizer,
    llama_text_config,
    llava_processor,
)

TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 56,
    "patch_size": 14,
    "projection_dim": 32,
}


def llava_parts(
    vision: dict | None = None,
    text: dict | None = None,
    vocab_size: int | None = None,
    init_range: float = INIT_RANGE,
):
    """``(LlavaConfig, processor)`` of the LLaVA-1.5 layout with the given sizes (default: tiny); no weights."""
    from transformers import CLIPVisionConfig, LlavaConfig

    vision, text = vision or TINY_VISION, text or TINY_TEXT
    tokenizer = llama_style_tokenizer()
    processor = llava_processor(tokenizer, vision["image_size"], LLAVA_CHAT_TEMPLATE)
    vocab = vocab_size or _padded_vocab(tokenizer)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=llama_text_config(tokenizer, text, vocab, init_range),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        initializer_range=init_range,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=tokenizer.pad_token_id,
    )
    return config, processor


def build_tiny_llava(seed: int = 0):
    """LLaVA-1.5 layout: CLIP vision tower (56 px, patch 14 -> 16 image tokens), MLP projector, Llama LM."""
    from transformers import LlavaForConditionalGeneration

    config, processor = llava_parts()
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    return model, processor
