"""Tiny random Idefics3 (SmolVLM): a SigLIP-like tower on 56 px crops, pixel shuffle, Llama LM; image splitting."""

from __future__ import annotations

import torch

from reminder_lightning.vlm.tiny.tokenizers import INIT_RANGE, TINY_TEXT, llama_text_config, train_tokenizer

#: SmolVLM-Instruct's chat template: ``<|im_start|>User:<image>question<end_of_utterance>\nAssistant:``.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
#: 56 px crops of 14 px patches (4x4), shuffled by 2 into 4 image tokens per crop (SmolVLM-Instruct: 384 px crops,
#: 729 patches shuffled by 3 into 81 tokens). Images are first resized to a longest edge of 168 px (the real model:
#: 1536) and split into 56 px crops plus a global view: the test images 70x50 (W x H) become 168x120 -> a 3x3 grid
#: (10 crops, 40 image tokens), 90x60 becomes 168x112 -> 2 rows of 3 (7 crops, 28 image tokens).
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 56,
    "patch_size": 14,
}
TINY_LONGEST_EDGE = 168
SCALE_FACTOR = 2


def smolvlm_tokenizer():
    """A tokenizer with SmolVLM's special tokens: ``<|im_start|>`` BOS (written by the template),
    ``<end_of_utterance>`` EOS, ``<|im_end|>`` pad, the image tokens and the 6x6 ``<row_i_col_j>`` tags."""
    rows = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>"]
    specials += ["<end_of_utterance>", "<global-img>", *rows]
    tokenizer = train_tokenizer(
        specials,
        unk_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
    )
    tokenizer.padding_side = "left"
    return tokenizer


def idefics3_processor(tokenizer, crop: int, longest_edge: int, image_seq_len: int, chat_template: str):
    """A real ``Idefics3Processor``: PIL image splitting into ``crop`` px crops plus a global view."""
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": longest_edge},
        max_image_size={"longest_edge": crop},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=chat_template,
    )


def idefics3_parts(
    vision: dict | None = None,
    text: dict | None = None,
    vocab_size: int | None = None,
    longest_edge: int = TINY_LONGEST_EDGE,
    scale_factor: int = SCALE_FACTOR,
    init_range: float = INIT_RANGE,
):
    """``(Idefics3Config, processor)`` of the Idefics3 / SmolVLM layout with the given sizes (default: tiny).

    The processor writes ``image_seq_len = (crop / patch)^2 / scale_factor^2`` image tokens per crop, the number
    the model's pixel-shuffle connector gives.
    """
    from transformers import Idefics3Config, Idefics3VisionConfig

    vision, text = vision or TINY_VISION, text or TINY_TEXT
    tokenizer = smolvlm_tokenizer()
    seq_len = (vision["image_size"] // vision["patch_size"]) ** 2 // scale_factor**2
    processor = idefics3_processor(tokenizer, vision["image_size"], longest_edge, seq_len, SMOLVLM_CHAT_TEMPLATE)
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**vision, initializer_range=init_range),
        text_config=llama_text_config(tokenizer, text, vocab_size, init_range),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=scale_factor,
        pad_token_id=tokenizer.pad_token_id,
    )
    return config, processor


def build_tiny_idefics3(seed: int = 0):
    """Idefics3 / SmolVLM layout: SigLIP-like tower on 56 px crops (3x3 at most plus a global view), pixel
    shuffle by 2 (4 tokens per crop), Llama LM."""
    from transformers import Idefics3ForConditionalGeneration

    config, processor = idefics3_parts()
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    return model, processor
