"""Tiny random LLaVA-NeXT: LLaVA-1.5's CLIP tower, projector and Llama LM, with anyres tiling and newline rows."""

from __future__ import annotations

import torch

from reminder_lightning.vlm.tiny.llava import TINY_VISION
from reminder_lightning.vlm.tiny.tokenizers import (
    CLIP_MEAN,
    CLIP_STD,
    INIT_RANGE,
    LLAVA_CHAT_TEMPLATE,
    TINY_TEXT,
    llama_style_tokenizer,
    llama_text_config,
)

#: Grid resolutions ``[height, width]`` in 56 px tiles where the real model has 336 px ones (1x2, 2x1, 2x2; the real
#: set adds 1x3 and 3x1). The test images land on different grids: 70x50 (W x H) on 1x2 (a base view and 2 tiles,
#: 44 image tokens), 90x60 on 2x2 (4 tiles, 70 tokens), so a batch holds images with different tile counts.
TINY_PINPOINTS = [[56, 112], [112, 56], [112, 112]]


def llava_next_processor(tokenizer, image_size: int, pinpoints: list[list[int]], chat_template: str):
    """A real ``LlavaNextProcessor``: PIL anyres image processing (``image_size`` px views), patch 14, CLS dropped."""
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=chat_template,
        num_additional_image_tokens=1,
    )


def llava_next_parts(
    vision: dict | None = None,
    text: dict | None = None,
    vocab_size: int | None = None,
    pinpoints: list[list[int]] | None = None,
    init_range: float = INIT_RANGE,
):
    """``(LlavaNextConfig, processor)`` of the LLaVA-NeXT layout with the given sizes (default: tiny); no weights.

    The config and the image processor share ``image_grid_pinpoints``: the processor tiles by them and counts image
    tokens with them, the model unpads and packs the tiles' features by them.
    """
    from transformers import CLIPVisionConfig, LlavaNextConfig

    vision, text, pinpoints = vision or TINY_VISION, text or TINY_TEXT, pinpoints or TINY_PINPOINTS
    tokenizer = llama_style_tokenizer()
    processor = llava_next_processor(tokenizer, vision["image_size"], pinpoints, LLAVA_CHAT_TEMPLATE)
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=llama_text_config(tokenizer, text, vocab_size, init_range),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        initializer_range=init_range,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=tokenizer.pad_token_id,
    )
    return config, processor


def build_tiny_llava_next(seed: int = 0):
    """LLaVA-NeXT layout: CLIP tower on 56 px views (a base view plus 2-4 tiles, 16 tokens each before unpadding),
    newline rows, MLP projector, Llama LM."""
    from transformers import LlavaNextForConditionalGeneration

    config, processor = llava_next_parts()
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config)
    return model, processor
