"""Hub-native artifacts: save_pretrained / from_pretrained / push_to_hub, never touching the network.

``FolderHub`` stands in for the Hub's server only: an upload lands in the hub cache's own layout
(``models--org--name/refs/<revision>`` -> ``snapshots/<commit>/``), as a download would leave it, and the real
``huggingface_hub.hf_hub_download`` reads it back with sockets disabled.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from reminder_lightning import SafetyReminder
from reminder_lightning.reminder.artifact import save_reminder
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.hub import model_card

BASE = "llava-hf/llava-1.5-7b-hf"


class FolderHub:
    def __init__(self, cache: Path):
        self.cache, self.created = cache, []

    def create_repo(self, repo_id, private=None, token=None, exist_ok=False):
        self.created.append((repo_id, private))

    def upload_folder(self, repo_id, folder_path, revision=None, token=None, commit_message=None):
        files = sorted(p for p in Path(folder_path).iterdir() if p.is_file())
        commit = hashlib.sha1(b"".join(p.read_bytes() for p in files)).hexdigest()
        storage = self.cache / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(folder_path, storage / "snapshots" / commit)
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / (revision or "main")).write_text(commit)
        return commit


def _artifact(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    probe = SafetyProbe(32, 2, layer=-2)
    probe.mean.normal_()
    probe.components.normal_()
    probe.coef.normal_()
    gate = {"chosen": "layer -2, PCA 2", "threshold_rule": "mid_gap", "target_fpr": 0.02}
    meta = {"base_model": BASE, "family": "llava", "model_type": "llava", "interval": "16", "threshold": "0.3",
            "mode": "gated", "objective": "sapt", "init_text": "Remember to be safe.", "gate": json.dumps(gate)}  # fmt: skip
    return save_reminder(tmp_path / "reminder.safetensors", torch.randn(4, 32), probe, meta)


def _compare() -> dict:
    rate = {"value": 0.05, "hits": 2, "n": 40, "ci95": [0.014, 0.165]}
    row = {"benchmark": "figstep", "judge": "keyword", "run": "safety_reminder", "n": 80, "asr": rate,
           "over_refusal": rate, "benign_unchanged": rate, "gate_rate_harmful": rate, "gate_rate_benign": rate}  # fmt: skip
    return {"results": [row]}


def _same(a: SafetyReminder, b: SafetyReminder) -> None:
    assert torch.equal(a.soft_prompt.weight, b.soft_prompt.weight)
    assert torch.equal(a.probe.components, b.probe.components) and a.probe.layer_index == b.probe.layer_index
    assert a.config.schedule == b.config.schedule


def test_save_pretrained_round_trips_the_schedule_and_writes_a_card(tmp_path):
    reminder = SafetyReminder.load(_artifact(tmp_path), threshold=0.1)  # a changed threshold is what gets saved
    folder = reminder.save_pretrained(tmp_path / "out", results=_compare(), training_data="SPA-VL 1000")
    back = SafetyReminder.from_pretrained(folder)
    _same(reminder, back)
    assert back.config.schedule.threshold == pytest.approx(0.1)
    card = (folder / "README.md").read_text()
    assert f"base_model: {BASE}" in card and "every 16 generated tokens" in card and "SPA-VL 1000" in card
    assert "| figstep | keyword | safety_reminder | 80 | 5.0% [1.4, 16.5] |" in card  # the judge and n beside it
    assert "layer -2, PCA 2" in card and back.metadata["content_sha256"] in card


def test_push_to_hub_then_load_by_repo_id_from_the_cache_without_network(tmp_path, monkeypatch):
    reminder = SafetyReminder.load(_artifact(tmp_path))
    hub = FolderHub(tmp_path / "cache")
    commit = reminder.push_to_hub("org/llava-reminder", results=_compare(), private=True, api=hub)
    assert hub.created == [("org/llava-reminder", True)]

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for revision in (None, commit):  # the branch and the commit it points at
        back = SafetyReminder.from_pretrained(
            "org/llava-reminder", revision=revision, cache_dir=tmp_path / "cache", local_files_only=True
        )
        _same(reminder, back)
    card = (tmp_path / "cache" / "models--org--llava-reminder" / "snapshots" / commit / "README.md").read_text()
    assert 'SafetyReminder.from_pretrained("org/llava-reminder")' in card


def test_missing_sources_stop_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="not in the hub cache"):
        SafetyReminder.from_pretrained("org/absent", cache_dir=tmp_path, local_files_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no reminder.safetensors"):
        SafetyReminder.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither a local file"):
        SafetyReminder.from_pretrained("runs/none/reminder.safetensors")
    reminder = SafetyReminder.load(_artifact(tmp_path))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a compare.json"):
        reminder.save_pretrained(tmp_path / "out", results=tmp_path / "bad.json")


def test_a_card_without_results_says_so_and_an_always_on_reminder_has_no_gate():
    card = model_card({"base_model": "demo:smollm2-llava", "num_tokens": "4"}, has_probe=False)
    assert "No measured results were attached" in card and "none (always on)" in card
    assert "base_model:" not in card  # not a hub id: no front-matter link
