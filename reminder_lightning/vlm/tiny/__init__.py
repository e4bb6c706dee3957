"""Tiny random VLMs of every supported family, built offline from configs.

They exist for tests and smoke runs: 2 transformer layers, hidden sizes of 32-64, a byte-level BPE
tokenizer trained in-process on a few paragraphs of English, the family's real processor class and a
chat template in the family's real format. Nothing is downloaded.

A tiny model is saved to a directory with ``save_pretrained`` and loaded back through the same
:class:`~reminder_lightning.vlm.adapter.VLMAdapter` path as any hub model, so the loading code that
users rely on is the code the tests exercise. Use the model id ``tiny:<family>`` (``tiny:llava``,
``tiny:llava_next``, ``tiny:qwen2_vl``, ``tiny:qwen2_5_vl``, ``tiny:gemma3``,
``tiny:idefics3``) anywhere a hub id is accepted.

Layout: :mod:`.tokenizers` holds what the families share (corpus, chat templates, tokenizers, the LLaVA
processor); each family is one module with one ``build_tiny_<family>(seed) -> (model, processor)``, listed in
:data:`TINY_BUILDERS`. A new family is a new module plus one entry there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from reminder_lightning.vlm.tiny.gemma3 import build_tiny_gemma3
from reminder_lightning.vlm.tiny.idefics3 import build_tiny_idefics3
from reminder_lightning.vlm.tiny.llava import build_tiny_llava
from reminder_lightning.vlm.tiny.llava_next import build_tiny_llava_next
from reminder_lightning.vlm.tiny.qwen2_5_vl import build_tiny_qwen2_5_vl
from reminder_lightning.vlm.tiny.qwen2_vl import build_tiny_qwen2_vl
from reminder_lightning.vlm.tiny.tokenizers import (
    GEMMA3_CHAT_TEMPLATE,
    INIT_RANGE,
    LLAVA_CHAT_TEMPLATE,
    QWEN2_VL_CHAT_TEMPLATE,
    llama_style_tokenizer,
    llava_processor,
    train_tokenizer,
)

__all__ = [
    "GEMMA3_CHAT_TEMPLATE",
    "INIT_RANGE",
    "LLAVA_CHAT_TEMPLATE",
    "QWEN2_VL_CHAT_TEMPLATE",
    "TINY_BUILDERS",
    "TINY_PREFIX",
    "TINY_VERSION",
    "build_tiny_gemma3",
    "build_tiny_idefics3",
    "build_tiny_llava",
    "build_tiny_llava_next",
    "build_tiny_qwen2_5_vl",
    "build_tiny_qwen2_vl",
    "default_tiny_cache",
    "ensure_tiny_model",
    "llama_style_tokenizer",
    "llava_processor",
    "train_tokenizer",
]

TINY_PREFIX = "tiny:"
TINY_VERSION = 2

#: family -> builder returning ``(model, processor)``; one module of this package per family.
TINY_BUILDERS: dict[str, Callable] = {
    "llava": build_tiny_llava,
    "llava_next": build_tiny_llava_next,
    "qwen2_vl": build_tiny_qwen2_vl,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "gemma3": build_tiny_gemma3,
    "idefics3": build_tiny_idefics3,
}


def default_tiny_cache() -> Path:
    """Where tiny models are saved: ``$REMINDER_TINY_CACHE`` or ``~/.cache/reminder_lightning/tiny``."""
    return Path(os.environ.get("REMINDER_TINY_CACHE", Path.home() / ".cache" / "reminder_lightning" / "tiny"))


def ensure_tiny_model(family: str, cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Build (once) and save the tiny model of ``family``; return its directory.

    The directory is keyed by family and seed and rebuilt when the builder's output format changes
    (:data:`TINY_VERSION`), so stale caches never leak into tests.
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


_QWEN_VIDEO_PROCESSOR = {
    "video_processor_type": "Qwen2VLVideoProcessor",
    "merge_size": 2,
    "patch_size": 14,
    "temporal_patch_size": 2,
}
_REAL_VIDEO_PROCESSORS = {"qwen2_vl": _QWEN_VIDEO_PROCESSOR, "qwen2_5_vl": _QWEN_VIDEO_PROCESSOR}


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
