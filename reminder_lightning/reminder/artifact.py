"""One safetensors file that carries a trained reminder: soft prompt, probe (optional) and metadata.

Tensors: ``soft_prompt`` ``(num_tokens, hidden_size)`` fp32 and, with a probe, ``probe.mean``,
``probe.components``, ``probe.coef``, ``probe.intercept``, ``probe.layer`` (files without it read the last
layer). Metadata (strings): ``base_model``,
``family``, ``num_tokens``, ``hidden_size``, ``init_text``, ``interval``, ``threshold``,
``package_version``, ``format_version``, and ``config`` (JSON of the resolved training settings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.reminder.soft_prompt import SoftPrompt

FORMAT_VERSION = "1"
_PROBE_KEYS = ("mean", "components", "coef", "intercept")


@dataclass
class ReminderArtifact:
    """A loaded reminder. ``metadata`` values are strings, as stored."""

    soft_prompt: torch.Tensor
    probe: SafetyProbe | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.soft_prompt.shape[0])

    @property
    def schedule(self) -> ReminderSchedule:
        """The schedule the artifact was exported with (validated: a bad threshold or interval fails here)."""
        try:
            return ReminderSchedule.from_metadata(self.metadata)
        except ValueError as err:
            raise ValueError(f"{self.metadata.get('path', 'The artifact')}: {err}") from err

    @property
    def interval(self) -> int:
        return self.schedule.interval

    @property
    def threshold(self) -> float:
        return self.schedule.threshold

    def soft_prompt_module(self) -> SoftPrompt:
        module = SoftPrompt(*self.soft_prompt.shape)
        with torch.no_grad():
            module.weight.copy_(self.soft_prompt)
        return module


def save_reminder(
    path: str | Path,
    soft_prompt: torch.Tensor,
    probe: SafetyProbe | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the artifact; metadata values are stored as strings (dicts/lists as JSON)."""
    from safetensors.torch import save_file

    from reminder_lightning import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"soft_prompt": soft_prompt.detach().float().cpu().contiguous()}
    if probe is not None:
        tensors.update(_probe_tensors(probe))
    meta = {
        "package_version": __version__,
        "format_version": FORMAT_VERSION,
        "num_tokens": str(soft_prompt.shape[0]),
        "hidden_size": str(soft_prompt.shape[1]),
    }
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_reminder(path: str | Path) -> ReminderArtifact:
    """Read an artifact written by :func:`save_reminder`; errors name the file and what is wrong."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No reminder artifact at {path}; train one with `python -m reminder_lightning fit`."
        )
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        metadata = dict(f.metadata() or {})
        if "soft_prompt" not in keys:
            raise ValueError(
                f"{path} is not a reminder artifact: it has no 'soft_prompt' tensor (has {sorted(keys)})."
            )
        tensors = {k: f.get_tensor(k) for k in keys}
    probe = _probe_from_tensors(tensors, path) if any(k.startswith("probe.") for k in keys) else None
    return ReminderArtifact(soft_prompt=tensors["soft_prompt"], probe=probe, metadata=metadata)


def load_probe(path: str | Path) -> SafetyProbe:
    """The probe of a reminder artifact or of a probe-only safetensors file (keys ``probe.*``)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No probe file at {path}; fit one with `python -m reminder_lightning probe`.")
    return _probe_from_tensors(load_file(str(path)), path)


def _probe_from_tensors(tensors: dict[str, torch.Tensor], path: Path) -> SafetyProbe:
    missing = [f"probe.{k}" for k in _PROBE_KEYS if f"probe.{k}" not in tensors]
    if missing:
        raise ValueError(f"{path} holds no complete probe: missing tensors {missing}.")
    comps = tensors["probe.components"]
    layer = int(tensors["probe.layer"]) if "probe.layer" in tensors else -1
    probe = SafetyProbe(comps.shape[1], comps.shape[0], layer=layer)
    probe.load_state_dict({k: tensors[f"probe.{k}"] for k in _PROBE_KEYS}, strict=False)
    return probe


def _probe_tensors(probe: SafetyProbe) -> dict[str, torch.Tensor]:
    tensors = {f"probe.{k}": getattr(probe, k).detach().float().cpu().contiguous() for k in _PROBE_KEYS}
    tensors["probe.layer"] = probe.layer.detach().long().cpu().reshape(())
    return tensors


def save_probe(path: str | Path, probe: SafetyProbe, metadata: dict[str, Any] | None = None) -> Path:
    """A probe-only safetensors file, loadable by :func:`load_probe`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = _probe_tensors(probe)
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}
    save_file(tensors, str(path), metadata=meta)
    return path
