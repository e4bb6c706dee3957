"""Check states on disk, keyed by everything they depend on, so a refit that reads the same answers again loads them.

``harden`` recalibrates the gate every round on the clean answers plus the answers under every adversarial input so
far; only the last round's inputs are new. With ``probe --states_cache <folder>`` each part (the clean records, the
records under one image, under one suffix group) is stored as ``<sha256>.safetensors`` (fp32 ``hidden``, ``sample``,
``step``), the key being the SHA-256 of a description of the model, the reminder file's content, where the states
are read (position, layers, schedule, decoding budget) and every record's question, image content and answer. The
description is stored beside the tensors and compared on load: a file that does not match is an error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from reminder_lightning.reminder.calibration import CheckStates


def image_fingerprint(image: str | bytes | None, seen: dict[str, str]) -> str | None:
    """SHA-256 of an image's bytes (a path: its file's; memoised per path in ``seen``)."""
    if image is None:
        return None
    if isinstance(image, bytes):
        return hashlib.sha256(image).hexdigest()
    if image not in seen:
        from reminder_lightning.reminder.artifact import file_sha256

        seen[image] = file_sha256(image)
    return seen[image]


class StateCache:
    """A folder of :class:`CheckStates`, one file per description (see the module docstring)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.hits = self.misses = 0

    def get(self, description: dict[str, Any], compute: Callable[[], CheckStates]) -> CheckStates:
        """The states ``description`` names: loaded when stored, else computed by ``compute`` and stored."""
        text = json.dumps(description, sort_keys=True, default=str)
        path = self.folder / f"{hashlib.sha256(text.encode()).hexdigest()}.safetensors"
        if path.exists():
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            if meta.get("description") != text:
                raise ValueError(
                    f"{path}: the stored check states were read for another description than their name says "
                    "(a damaged or hand-edited cache). Fix: delete the file; it is computed again."
                )
            tensors = load_file(str(path))
            self.hits += 1
            return CheckStates(
                tensors["hidden"], tensors["sample"], tensors["step"], json.loads(meta["layers"]),
                int(meta["num_samples"]),
            )  # fmt: skip
        states = compute()
        self.misses += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(
            {"hidden": states.hidden.contiguous(), "sample": states.sample, "step": states.step},
            str(tmp),
            metadata={
                "description": text,
                "layers": json.dumps(states.layers),
                "num_samples": str(states.num_samples),
            },
        )
        os.replace(tmp, path)  # whole files only: a killed run leaves no half-written states
        return states
