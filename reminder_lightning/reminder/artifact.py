"""One safetensors file that carries a trained reminder: soft prompt, probe (optional) and metadata.

Tensors: ``soft_prompt`` ``(num_tokens, hidden_size)`` fp32 and, with a probe, ``probe.mean``,
``probe.components``, ``probe.coef``, ``probe.intercept``, ``probe.layer`` (files without it read the last
layer; a 1-D tensor for a probe that reads several layers concatenated). Metadata (strings): ``base_model``,
``family``, ``num_tokens``, ``hidden_size``, ``init_text``, ``interval``, ``threshold``,
``package_version``, ``format_version``, ``config`` (JSON of the resolved training settings) and
``content_sha256``.

Loading validates the whole artifact before anything uses it (a gate that silently switches itself off is the
failure this guards against): the format version, the content hash (format 2: SHA-256 over every tensor and every
other metadata field, so flipped bytes or an edited threshold are caught), finite tensors, consistent shapes
(soft prompt width = ``hidden_size``, probe width = ``hidden_size`` x its number of layers), and the schedule (threshold a finite number in [0, 1],
interval >= 1). Every error names the file, the tensor or field, and the fix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.reminder.soft_prompt import SoftPrompt

FORMAT_VERSION = "2"  # 2: content_sha256
READABLE_VERSIONS = ("1", "2")  # 1: no hash (written before 2026-12-05); loaded with every other check
HASH_KEY = "content_sha256"
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
    meta = {key: value if isinstance(value, str) else json.dumps(value) for key, value in (metadata or {}).items()}
    meta.update(  # what the file itself is: never taken from the caller's metadata (a copied artifact's)
        package_version=__version__,
        format_version=FORMAT_VERSION,
        num_tokens=str(soft_prompt.shape[0]),
        hidden_size=str(soft_prompt.shape[1]),
    )
    meta[HASH_KEY] = content_hash(tensors, meta)
    validate_artifact(tensors, meta, path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_reminder(path: str | Path) -> ReminderArtifact:
    """Read an artifact written by :func:`save_reminder`; errors name the file and what is wrong."""

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No reminder artifact at {path}; train one with `python -m reminder_lightning fit`."
        )
    tensors, metadata = _read(path)
    if "soft_prompt" not in tensors:
        raise ValueError(
            f"{path} is not a reminder artifact: it has no 'soft_prompt' tensor (has {sorted(tensors)})."
        )
    validate_artifact(tensors, metadata, path)
    probe = _probe_from_tensors(tensors, path) if any(k.startswith("probe.") for k in tensors) else None
    return ReminderArtifact(soft_prompt=tensors["soft_prompt"], probe=probe, metadata=metadata)


def load_probe(path: str | Path) -> SafetyProbe:
    """The probe of a reminder artifact or of a probe-only safetensors file (keys ``probe.*``), validated."""

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No probe file at {path}; fit one with `python -m reminder_lightning probe`.")
    tensors, metadata = _read(path)
    if "soft_prompt" in tensors:
        validate_artifact(tensors, metadata, path)
    else:
        _check_probe(tensors, path, None)
    return _probe_from_tensors(tensors, path)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata of a safetensors file; anything else (a pickle, a truncated file) fails
    naming the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            return {k: f.get_tensor(k) for k in names}, dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}): truncated, corrupt, or another format (pickled "
            "checkpoints are never loaded). Fix: export the reminder again with `fit` or `save_reminder`."
        ) from err


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (what evaluation folders record about the artifact they were made with)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes) and every metadata field except the hash itself."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    rest = {k: v for k, v in metadata.items() if k != HASH_KEY}
    digest.update(json.dumps(rest, sort_keys=True).encode())
    return digest.hexdigest()


def validate_artifact(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path | str) -> None:
    """Raise ``ValueError`` (naming ``path``, the tensor or field, and the fix) unless the artifact is whole."""
    version = metadata.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(
            f"{path}: metadata 'format_version' is {version!r}; this version of reminder_lightning reads "
            f"{list(READABLE_VERSIONS)}. Fix: re-export the reminder with `save_reminder` (or upgrade the package)."
        )
    if version != "1":
        stored = metadata.get(HASH_KEY)
        if stored is None or stored != content_hash(tensors, metadata):
            raise ValueError(
                f"{path}: content hash mismatch (metadata {HASH_KEY!r} {'missing' if stored is None else 'differs'}"
                "): the file was changed or corrupted after it was written (tensors or metadata such as the "
                "threshold). Fix: re-export or re-download the artifact; do not edit it by hand."
            )
    soft = tensors["soft_prompt"]
    if soft.dim() != 2 or soft.shape[0] < 1 or soft.shape[1] < 1:
        raise ValueError(
            f"{path}: tensor 'soft_prompt' has shape {tuple(soft.shape)}; expected (num_tokens >= 1, hidden_size)."
        )
    if not soft.is_floating_point() or not torch.isfinite(soft).all():
        raise ValueError(
            f"{path}: tensor 'soft_prompt' holds non-finite values (NaN or inf): training diverged or the file "
            "is corrupt. Fix: retrain (lower the learning rate) or restore a good artifact."
        )
    for key, size in (("num_tokens", soft.shape[0]), ("hidden_size", soft.shape[1])):
        if key in metadata and metadata[key] != str(size):
            raise ValueError(
                f"{path}: metadata {key!r} is {metadata[key]!r} but tensor 'soft_prompt' has {size}. Fix: re-export."
            )
    _check_probe(tensors, path, int(soft.shape[1]))
    try:
        ReminderSchedule.from_metadata(metadata)
    except ValueError as err:
        raise ValueError(f"{path}: {err} Fix: re-export with a valid schedule.") from err


def _check_probe(tensors: dict[str, torch.Tensor], path: Path | str, width: int | None) -> None:
    names = [k for k in tensors if k.startswith("probe.")]
    if not names:
        return
    missing = [f"probe.{k}" for k in _PROBE_KEYS if f"probe.{k}" not in tensors]
    if missing:
        raise ValueError(f"{path} holds no complete probe: missing tensors {missing}.")
    for name in names:
        if name != "probe.layer" and not torch.isfinite(tensors[name]).all():
            raise ValueError(
                f"{path}: tensor {name!r} holds non-finite values (NaN or inf): the gate could never flag. "
                "Fix: refit the probe (`python -m reminder_lightning probe`) and re-export."
            )
    comps, mean = tensors["probe.components"], tensors["probe.mean"]
    layer = tensors.get("probe.layer", torch.tensor(-1))
    if layer.dim() > 1 or layer.numel() < 1 or layer.is_floating_point():
        raise ValueError(
            f"{path}: tensor 'probe.layer' has shape {tuple(layer.shape)} ({layer.dtype}); expected one integer or a "
            "1-D list of hidden_states entries. Fix: refit the probe and re-export."
        )
    hidden = width * layer.numel() if width is not None else mean.shape[-1]
    if hidden % layer.numel():
        raise ValueError(
            f"{path}: tensor 'probe.mean' has width {hidden}, not {layer.numel()} layers' states concatenated "
            f"(probe.layer {layer.tolist()}). Fix: refit the probe and re-export."
        )
    expected = {
        "probe.components": (comps.shape[0], hidden),
        "probe.mean": (hidden,),
        "probe.coef": (comps.shape[0],),
    }
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(
                f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {shape}"
                + (f" (the soft prompt's width is {width}, x {layer.numel()} layers)" if width is not None else "")
                + ": the probe was fitted on another model. Fix: refit it on this model."
            )
    if tensors["probe.intercept"].numel() != 1:
        raise ValueError(f"{path}: tensor 'probe.intercept' must hold one value.")


def _probe_from_tensors(tensors: dict[str, torch.Tensor], path: Path) -> SafetyProbe:
    missing = [f"probe.{k}" for k in _PROBE_KEYS if f"probe.{k}" not in tensors]
    if missing:
        raise ValueError(f"{path} holds no complete probe: missing tensors {missing}.")
    comps = tensors["probe.components"]
    layer = tensors["probe.layer"].tolist() if "probe.layer" in tensors else -1
    n_layers = 1 if isinstance(layer, int) else len(layer)
    probe = SafetyProbe(comps.shape[1] // n_layers, comps.shape[0], layer=layer)
    probe.load_state_dict({k: tensors[f"probe.{k}"] for k in _PROBE_KEYS}, strict=False)
    return probe


def _probe_tensors(probe: SafetyProbe) -> dict[str, torch.Tensor]:
    tensors = {f"probe.{k}": getattr(probe, k).detach().float().cpu().contiguous() for k in _PROBE_KEYS}
    tensors["probe.layer"] = probe.layer.detach().long().cpu().clone()  # 0-d: one layer; 1-D: several
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
