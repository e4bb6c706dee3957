"""Random-weight twins of the real 7B models: the real shapes, no download, for memory and speed checks on a GPU.

``shapes:llava-1.5-7b`` and ``shapes:qwen2-vl-7b`` work anywhere a hub id does. The folder holds the published
architecture's config (layer counts, widths, heads, vocabulary, vision tower, image resolution) with the tiny
models' offline tokenizer and the family's real processor class, and no weights: :meth:`VLMAdapter.load` builds
the model from the config with random weights (seeded), on the GPU when there is one. Outputs are noise; memory,
step time and tokens per second are those of the real model (the tokenizer makes more tokens per word than the
real one, which only changes how long a given text is).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SHAPES_PREFIX = "shapes:"
MARKER = "random_weights.json"

_LLAVA_7B = {
    "vision": {  # CLIP ViT-L/14 at 336 px
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "projection_dim": 768,
    },
    "text": {  # Vicuna-7B
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
    },
    "vocab_size": 32064,
}
_QWEN2_VL_7B = {
    "vision": {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "num_heads": 16, "mlp_ratio": 4},
    "text": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
    },
    "vocab_size": 152064,
    "pixels": (12544, 200704),
}


def _parts(name: str):
    from reminder_lightning.vlm.tiny.llava import llava_parts
    from reminder_lightning.vlm.tiny.qwen2_vl import qwen2_vl_parts

    if name == "llava-1.5-7b":
        return llava_parts(**_LLAVA_7B, init_range=0.02)
    if name == "qwen2-vl-7b":
        return qwen2_vl_parts(**_QWEN2_VL_7B, init_range=0.02)
    raise ValueError(f"Unknown shapes model {name!r}; choose one of {SHAPES}.")


SHAPES = ("llava-1.5-7b", "qwen2-vl-7b")


def ensure_shapes_model(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Write (once) the config and processor of ``shapes:<name>``; return the folder."""
    from reminder_lightning.vlm.tiny import default_tiny_cache

    root = Path(cache_dir) if cache_dir is not None else default_tiny_cache()
    target = root / f"shapes-{name}-v1"
    if (target / MARKER).exists():
        return target
    config, processor = _parts(name)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    config.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps({"shapes": name, "seed": 0}))
    try:
        tmp.rename(target)
    except OSError:
        import shutil

        shutil.rmtree(tmp)
    return target


def is_random_weights(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).exists()


def build_random(path: str | os.PathLike, dtype, device=None):
    """The model of a ``shapes:`` folder with seeded random weights, built directly on ``device`` (default: the
    current GPU when there is one, else the CPU)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(path)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForImageTextToText.from_config(config, dtype=None if dtype == "auto" else dtype)
