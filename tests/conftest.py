"""Shared fixtures: tiny models of every family, built once per session into a private cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3", "idefics3"]
#: the family class (``reminder_lightning.vlm.families``) each tiny twin's model type goes through: Qwen2.5-VL's
#: differences from Qwen2-VL (windowed vision attention, its MLP and norms) live inside the model's forward
FAMILY_NAMES = {
    "llava": "llava",
    "llava_next": "llava_next",
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_vl",
    "gemma3": "gemma3",
    "idefics3": "idefics3",
}


def random_reminder(path, intercept: float = 0.0):
    """A random soft prompt and probe for the tiny LLaVA (hidden 64), gate P(safe) < 0.5, check every 4 tokens."""
    from reminder_lightning.reminder.artifact import save_reminder
    from reminder_lightning.reminder.detector import SafetyProbe

    torch.manual_seed(0)
    probe = SafetyProbe(64, 4)
    q, _ = torch.linalg.qr(torch.randn(64, 4))
    probe.components.copy_(q.T)
    probe.coef.copy_(torch.randn(4))
    probe.intercept.fill_(intercept)
    return save_reminder(path, torch.randn(4, 64) * 0.02, probe, {"interval": "4", "threshold": "0.5"})


def pytest_configure(config):
    # Tests must not depend on (or pollute) a user's cache; subprocesses inherit this.
    if "REMINDER_TINY_CACHE" not in os.environ:
        os.environ["REMINDER_TINY_CACHE"] = str(Path(config.rootpath) / ".pytest_cache" / "tiny-models")
    if "REMINDER_DEMO_CACHE" not in os.environ:
        os.environ["REMINDER_DEMO_CACHE"] = str(Path(config.rootpath) / ".pytest_cache" / "demo-models")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def adapters():
    """``{family: VLMAdapter}`` of the tiny models in float32, loaded once."""
    from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec

    out = {}
    for family in FAMILIES:
        adapter = VLMAdapter.load(VLMSpec(f"tiny:{family}", dtype="float32"))
        adapter.requires_grad_(False)
        out[family] = adapter
    return out


@pytest.fixture
def red_image():
    from PIL import Image

    return Image.new("RGB", (70, 50), (200, 30, 30))


@pytest.fixture(autouse=True)
def _finish_wandb_runs():
    """A W&B run left open by one in-process CLI call would be reused by the next test's logger."""
    yield
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
