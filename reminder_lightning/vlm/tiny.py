"""Tiny random VLMs of every supported family, built offline from configs.

They exist for tests and smoke runs: 2 transformer layers, hidden sizes of 32-64, a byte-level BPE
tokenizer trained in-process on a few paragraphs of English, the family's real processor class and a
chat template in the family's real format. Nothing is downloaded.

A tiny model is saved to a directory with ``save_pretrained`` and loaded back through the same
:class:`~reminder_lightning.vlm.adapter.VLMAdapter` path as any hub model, so the loading code that
users rely on is the code the tests exercise. Use the model id ``tiny:<family>`` (``tiny:llava``,
``tiny:qwen2_vl``, ``tiny:gemma3``) anywhere a hub id is accepted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from reminder_lightning.vlm.processors import processor_without_torchvision, torchvision_available

TINY_PREFIX = "tiny:"
#: Weight init std of the tiny models. Larger than the usual 0.02 so that a 2-layer random model has
#: peaked (not near-uniform) next-token distributions that a 4-vector soft prompt can visibly steer.
INIT_RANGE = 0.2
_CORPUS = """
The quick brown fox jumps over the lazy dog. A picture shows a red square on a white background.
How do I bake bread at home? Mix flour, water, salt and yeast, knead the dough, let it rise and bake it.
I cannot help with that request because it could cause harm. I'm sorry, but I can't assist with this.
Sure, here is a step by step guide. First, gather the materials. Second, follow the instructions carefully.
Refuse if partial output is unsafe; else, continue helpfully. What is shown in this image?
The weather today is sunny with a light breeze. Photosynthesis converts light into chemical energy.
Write a poem about the sea. Explain how vaccines work. Describe the history of the printing press.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Punctuation: , . ; : ! ? ' " ( ) [ ] { } - _ / \\ @ # $ % & *
"""

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<start_of_image>"
    "{% elif content['type'] == 'text' %}{{ content['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def train_tokenizer(special_tokens: list[str], vocab_size: int = 600, add_bos: str | None = None, **token_attrs):
    """Train a byte-level BPE on the built-in corpus and wrap it as a fast tokenizer.

    Byte-level means every string can be encoded; the special tokens get the first ids.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    if add_bos is not None:  # Llama-style: the tokenizer itself prepends BOS
        from tokenizers import processors

        bos_id = tok.token_to_id(add_bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{add_bos} $A", pair=f"{add_bos} $A {add_bos} $B", special_tokens=[(add_bos, bos_id)]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **token_attrs)


def llama_style_tokenizer():
    """A Llama-style tokenizer (``<s>`` prepended, ``</s>`` EOS, ``<image>`` placeholder), left padding."""
    tokenizer = train_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        add_bos="<s>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tokenizer.padding_side = "left"
    return tokenizer


def llava_processor(tokenizer, image_size: int, chat_template: str):
    """A real ``LlavaProcessor``: PIL CLIP image processing at ``image_size`` px, patch 14, CLS dropped."""
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=chat_template,
        num_additional_image_tokens=1,
    )


def _padded_vocab(tokenizer, multiple: int = 64) -> int:
    n = len(tokenizer)
    return ((n + multiple - 1) // multiple) * multiple


def build_tiny_llava(seed: int = 0):
    """LLaVA-1.5 layout: CLIP vision tower (56 px, patch 14 -> 16 image tokens), MLP projector, Llama LM."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    tokenizer = llama_style_tokenizer()
    processor = llava_processor(tokenizer, 56, LLAVA_CHAT_TEMPLATE)
    vocab = _padded_vocab(tokenizer)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
            projection_dim=32,
        ),
        text_config=LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            initializer_range=INIT_RANGE,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        initializer_range=INIT_RANGE,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    return model, processor


def build_tiny_qwen2_vl(seed: int = 0):
    """Qwen2-VL layout: ViT with 2x2 patch merging, dynamic resolution (56-112 px), M-RoPE Qwen2 LM."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    tokenizer = train_tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.padding_side = "left"
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    if torchvision_available():
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        processor = Qwen2VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=QWEN2_VL_CHAT_TEMPLATE,
        )
    else:
        processor = processor_without_torchvision(
            Qwen2VLProcessor,
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=QWEN2_VL_CHAT_TEMPLATE,
        )
    vocab = _padded_vocab(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|endoftext|>"],
            "initializer_range": INIT_RANGE,
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        initializer_range=INIT_RANGE,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    return model, processor


def build_tiny_gemma3(seed: int = 0):
    """Gemma 3 layout: SigLIP tower (56 px, patch 14) pooled to 4 soft tokens, bidirectional image attention."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    specials = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
    ]
    tokenizer = train_tokenizer(
        specials,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    tokenizer.padding_side = "left"
    image_processor = Gemma3ImageProcessorPil(size={"height": 56, "width": 56}, do_pan_and_scan=False)
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=4,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = Gemma3Config(
        text_config=Gemma3TextConfig(
            vocab_size=_padded_vocab(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            sliding_window=64,
            max_position_embeddings=2048,
            pad_token_id=ids["<pad>"],
            bos_token_id=ids["<bos>"],
            eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
            initializer_range=INIT_RANGE,
        ),
        vision_config=SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
        ),
        mm_tokens_per_image=4,
        boi_token_id=ids["<start_of_image>"],
        eoi_token_id=ids["<end_of_image>"],
        image_token_id=ids["<image_soft_token>"],
        initializer_range=INIT_RANGE,
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config)
    return model, processor


TINY_BUILDERS: dict[str, Callable] = {
    "llava": build_tiny_llava,
    "qwen2_vl": build_tiny_qwen2_vl,
    "gemma3": build_tiny_gemma3,
}


def default_tiny_cache() -> Path:
    """Where tiny models are saved: ``$REMINDER_TINY_CACHE`` or ``~/.cache/reminder_lightning/tiny``."""
    return Path(os.environ.get("REMINDER_TINY_CACHE", Path.home() / ".cache" / "reminder_lightning" / "tiny"))


def ensure_tiny_model(family: str, cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Build (once) and save the tiny model of ``family``; return its directory.

    The directory is keyed by family and seed and rebuilt when the builder's output format changes
    (``tiny_version`` below), so stale caches never leak into tests.
    """
    if family not in TINY_BUILDERS:
        raise ValueError(f"Unknown tiny model family {family!r}; choose one of {sorted(TINY_BUILDERS)}.")
    root = Path(cache_dir) if cache_dir is not None else default_tiny_cache()
    target = root / f"{family}-seed{seed}-v{TINY_VERSION}"
    marker = target / "tiny_model.json"
    if marker.exists():
        return target
    model, processor = TINY_BUILDERS[family](seed=seed)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    _name_real_video_processor(tmp, family)
    (tmp / "tiny_model.json").write_text(json.dumps({"family": family, "seed": seed, "version": TINY_VERSION}))
    try:
        tmp.rename(target)
    except OSError:
        # Another process built it first: theirs is identical (same seed), keep it.
        import shutil

        shutil.rmtree(tmp, ignore_errors=False)
    return target


TINY_VERSION = 2
_REAL_VIDEO_PROCESSORS = {
    "qwen2_vl": {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "merge_size": 2,
        "patch_size": 14,
        "temporal_patch_size": 2,
    },
}


def _name_real_video_processor(directory: Path, family: str) -> None:
    """Where the processor was assembled without torchvision, record the family's real video processor,
    so the saved model also loads with plain ``AutoProcessor`` on machines that have torchvision."""
    cfg_file = directory / "processor_config.json"
    if family not in _REAL_VIDEO_PROCESSORS or not cfg_file.exists():
        return
    cfg = json.loads(cfg_file.read_text())
    if "video_processor" in cfg:
        cfg["video_processor"] = dict(_REAL_VIDEO_PROCESSORS[family])
        cfg_file.write_text(json.dumps(cfg, indent=2))
