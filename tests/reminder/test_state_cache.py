"""The check-state cache: a stored part is read back as computed, and a file that does not match its name stops."""

from __future__ import annotations

import shutil

import pytest
import torch

from reminder_lightning.reminder.calibration import CheckStates
from reminder_lightning.reminder.state_cache import StateCache


def _states(seed: int) -> CheckStates:
    g = torch.Generator().manual_seed(seed)
    return CheckStates(torch.randn(5, 2, 4, generator=g), torch.tensor([0, 0, 1, 2, 2]), torch.tensor([3, 7, 3, 3, 7]),
                       [1, -1], 4)  # fmt: skip


def test_a_stored_part_is_read_back_exactly_and_a_mismatched_file_stops(tmp_path):
    cache = StateCache(tmp_path)
    calls = []
    first = cache.get({"records": ["a"]}, lambda: calls.append(1) or _states(0))
    again = cache.get({"records": ["a"]}, lambda: calls.append(1) or _states(1))
    assert calls == [1] and (cache.hits, cache.misses) == (1, 1)  # the second read never ran the model
    for name in ("hidden", "sample", "step"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert again.layers == [1, -1] and again.num_samples == 4
    other = cache.get({"records": ["b"]}, lambda: _states(1))
    assert not torch.equal(other.hidden, first.hidden) and len(list(tmp_path.glob("*.safetensors"))) == 2
    stored_a = next(
        p for p in tmp_path.glob("*.safetensors") if p.stat().st_size and p != _path_of(tmp_path, other)
    )
    shutil.copyfile(_path_of(tmp_path, other), stored_a)  # a file whose content was read for another description
    with pytest.raises(ValueError, match="another description than their name says.*Fix: delete the file"):
        StateCache(tmp_path).get({"records": ["a"]}, lambda: _states(0))


def _path_of(folder, states: CheckStates):
    """The stored file holding ``states``."""
    from safetensors.torch import load_file

    return next(p for p in folder.glob("*.safetensors") if torch.equal(load_file(str(p))["hidden"], states.hidden))
