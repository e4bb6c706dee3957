"""The benchmarks' model: a LLaVA-1.5-layout VLM with random weights of a preset's shapes, and its inputs.

Random weights of real shapes: timings are real, the words are not. No download: the tokenizer is trained
in-process and the processor is a real ``LlavaProcessor`` (see :mod:`reminder_lightning.vlm.tiny`).
"""

from __future__ import annotations

import platform
from datetime import date

import torch
from PIL import Image

PRESETS = {
    # name: (text config, vision config, image size)
    "tiny": (
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=640,
        ),
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        112,
    ),
    "smollm2-llava": (
        dict(
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            vocab_size=49152,
            tie_word_embeddings=True,
            rope_theta=100000.0,
        ),
        dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
        112,
    ),
    "llava-7b": (
        dict(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32064,
        ),
        dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
        336,
    ),
}
PROMPTS = [
    "Describe this picture in detail.",
    "What colours can you see here?",
    "Write a short story about this image.",
    "What is happening in this photo?",
    "List the objects in the image.",
    "Is this a good place for a picnic?",
    "What time of day does this look like?",
    "Suggest a title for this image.",
]


def build_vlm(preset: str, device: str, dtype: torch.dtype):
    """``(VLMAdapter, image tokens per image)`` for the preset, seeded (the same weights in every run)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from reminder_lightning.vlm.adapter import VLMAdapter
    from reminder_lightning.vlm.tiny import LLAVA_CHAT_TEMPLATE, llama_style_tokenizer, llava_processor

    text, vision, image_size = PRESETS[preset]
    tokenizer = llama_style_tokenizer()
    processor = llava_processor(tokenizer, image_size, LLAVA_CHAT_TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=image_size, patch_size=14, **vision),
        text_config=LlamaConfig(
            max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=3, **text
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(dtype).eval()
    model.generation_config.pad_token_id = 3
    return VLMAdapter.wrap(model, processor), (image_size // 14) ** 2


def sample_batch(batch: int) -> tuple[list[Image.Image], list[str]]:
    """``batch`` (image, prompt) pairs: benign prompts (cycled) and plain images of slightly different sizes."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    images = [Image.new("RGB", (160 + 8 * i, 120), (40 * i % 255, 120, 200)) for i in range(batch)]
    return images, prompts


def machine_name(device: str) -> str:
    """The GPU's name, or the CPU and the threads torch uses."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def run_header(args, scenario: str, batch: int) -> dict:
    """The first keys of a benchmark's JSON row: what ran, where, with which versions, when."""
    import transformers

    return {
        "scenario": scenario,
        "preset": args.preset,
        "device": args.device,
        "machine": machine_name(args.device),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": date.today().isoformat(),
        "batch": batch,
        "new_tokens": args.new_tokens,
    }
