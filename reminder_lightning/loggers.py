"""Loggers: Weights & Biases that goes offline by itself when no API key is available."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_has_credentials() -> bool:
    """True when ``WANDB_API_KEY`` is set or ``~/.netrc`` holds an api.wandb.ai login."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    if os.path.exists(netrc):
        with open(netrc) as f:
            return "api.wandb.ai" in f.read()
    return False


class AutoWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger``, offline unless credentials exist (then online, unless asked otherwise).

    Args:
        offline: Force offline (True) or online (False); None decides from the credentials.
        **kwargs: Everything ``WandbLogger`` takes (``project``, ``name``, ``save_dir``, ``tags``, ...).
    """

    def __init__(self, offline: bool | None = None, **kwargs: Any):
        if offline is None:
            offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_has_credentials()
        super().__init__(offline=offline, **kwargs)
