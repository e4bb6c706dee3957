"""2-process DDP on CPU ends with the soft prompt that one process gets from the same global batches."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training.helpers import REPO, TINY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit(out: Path, *extra: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "reminder_lightning",
        "fit",
        "--config",
        TINY,
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
        "--trainer.enable_progress_bar=false",
        "--model.export_path=null",
        "--trainer.max_epochs=2",
        "--data.init_args.num_examples=16",
        "--trainer.callbacks+=tests.training.rank_dump.DumpSoftPrompt",
        f"--trainer.callbacks.out_dir={out / 'ranks'}",
        *extra,
    ]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    _fit(tmp_path / "single", "--trainer.devices=1", "--data.init_args.batch_size=4")
    _fit(tmp_path / "ddp", "--trainer.devices=2", "--trainer.strategy=ddp", "--data.init_args.batch_size=2")
    single = load_file(str(tmp_path / "single" / "ranks" / "rank0.safetensors"))["soft_prompt"]
    rank0 = load_file(str(tmp_path / "ddp" / "ranks" / "rank0.safetensors"))["soft_prompt"]
    rank1 = load_file(str(tmp_path / "ddp" / "ranks" / "rank1.safetensors"))["soft_prompt"]
    assert torch.equal(rank0, rank1)  # DDP keeps the ranks in lockstep
    torch.testing.assert_close(rank0, single, rtol=1e-4, atol=1e-5)
    init = load_file(str(next((tmp_path / "single").rglob("reminder.safetensors"))))["soft_prompt"]
    assert not torch.allclose(init, torch.zeros_like(init))
    # training moved the vectors by much more than the tolerance, so the comparison is not vacuous
    assert (rank0 - _text_init()).abs().max() > 1e-2


def _text_init() -> torch.Tensor:
    from reminder_lightning.reminder import SoftPrompt
    from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec

    adapter = VLMAdapter.load(VLMSpec("tiny:llava", dtype="float32"))
    soft = SoftPrompt(4, adapter.hidden_size)
    soft.initialize("text", adapter.input_embeddings(), adapter.tokenizer)
    return soft.weight.detach()
