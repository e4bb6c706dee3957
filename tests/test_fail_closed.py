"""Regression tests for the five ways the defence used to fail open, each through the commands a user runs.

1. an artifact whose gate cannot produce a finite score, or a threshold outside [0, 1], is refused;
2. a results folder made by another defence is refused instead of being reported as this run's;
3. image paths outside the data root are refused;
4. a fit with no training examples trains nothing and says so, instead of exporting an untrained reminder;
5. resuming with ``--ckpt_path`` keeps the command line's settings and never overwrites an earlier reminder.
"""

from __future__ import annotations

import json

import pytest
import torch

from reminder_lightning.cli import main
from reminder_lightning.data.records import RecordError
from reminder_lightning.evaluation.store import read_jsonl
from reminder_lightning.reminder.artifact import HASH_KEY, content_hash, load_reminder, save_reminder
from reminder_lightning.reminder.detector import SafetyProbe
from tests.training.helpers import REPO, run_fit

EVAL = str(REPO / "configs/eval/tiny.yaml")
REMINDER = "reminder_lightning.defences.safety_reminder.SafetyReminderDefence"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def run_eval(out, *extra):
    return main(
        [
            "test",
            "--config",
            EVAL,
            f"--model.output_dir={out}",
            f"--trainer.logger.init_args.save_dir={out}",
            "--trainer.enable_progress_bar=false",
            *extra,
        ]
    )


def gated_artifact(path, hidden, **metadata):
    probe = SafetyProbe(hidden, 2)
    probe.components.copy_(torch.randn(2, hidden, generator=torch.Generator().manual_seed(0)))
    probe.coef.copy_(torch.tensor([2.0, -2.0]))
    meta = {"interval": 8, "threshold": 0.5, "model_type": "llava", **metadata}
    return save_reminder(path, torch.randn(4, hidden) * 0.2, probe, meta)


def poison(path, tensor: str | None = None, **metadata):
    """Rewrite an artifact as a consistent (re-hashed) file with a NaN tensor or edited metadata: what a buggy
    training run or a careless edit would produce, so only the content checks can catch it."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in list(f.keys())}, dict(f.metadata())
    if tensor is not None:
        tensors[tensor] = torch.full_like(tensors[tensor], float("nan"))
    meta.update(metadata)
    meta[HASH_KEY] = content_hash(tensors, meta)
    save_file(tensors, str(path), metadata=meta)
    return path


def test_defect_1_gate_cannot_switch_itself_off(tmp_path, adapters):
    hidden = adapters["llava"].hidden_size
    for i, (tensor, metadata, fragment) in enumerate(
        [
            ("probe.coef", {}, "non-finite"),
            ("probe.mean", {}, "non-finite"),
            ("soft_prompt", {}, "non-finite"),
            (None, {"threshold": "nan"}, "threshold"),
        ]
    ):
        bad = poison(gated_artifact(tmp_path / f"bad{i}.safetensors", hidden), tensor, **metadata)
        out = tmp_path / f"eval{i}"
        with pytest.raises(ValueError, match=fragment) as err:
            run_eval(out, f"--model.defence={REMINDER}", f"--model.defence.artifact={bad}")
        assert str(bad) in str(err.value)
        assert not (out / "summary.json").exists() and not read_jsonl(out / "generations.jsonl")
    good = gated_artifact(tmp_path / "good.safetensors", hidden)
    for threshold in ("1.5", "-1", "5"):
        with pytest.raises(ValueError, match=r"threshold must be a finite number in \[0, 1\]"):
            run_eval(
                tmp_path / "eval-t",
                f"--model.defence={REMINDER}",
                f"--model.defence.artifact={good}",
                f"--model.defence.threshold={threshold}",
            )


def test_defect_2_reusing_an_output_dir_with_another_defence_is_refused(tmp_path, adapters):
    out = tmp_path / "eval"
    run_eval(out, "--data.benchmarks.init_args.limit=4")
    before = (out / "generations.jsonl").read_text()
    artifact = gated_artifact(tmp_path / "reminder.safetensors", adapters["llava"].hidden_size)
    with pytest.raises(ValueError, match="another defence") as err:
        run_eval(out, f"--model.defence={REMINDER}", f"--model.defence.artifact={artifact}")
    assert "output_dir" in str(err.value) and str(out) in str(err.value)
    assert (out / "generations.jsonl").read_text() == before  # nothing lost, nothing relabelled
    summary = json.loads((out / "summary.json").read_text())
    assert {r["defence"] for r in summary["results"]} == {"none"}
    # the same artifact retrained in place (another file at the same path) is another defence too
    run_eval(tmp_path / "eval-r", f"--model.defence={REMINDER}", f"--model.defence.artifact={artifact}")
    gated_artifact(artifact, adapters["llava"].hidden_size, threshold=0.4)
    with pytest.raises(ValueError, match="artifact_sha256"):
        run_eval(tmp_path / "eval-r", f"--model.defence={REMINDER}", f"--model.defence.artifact={artifact}")


def test_defect_3_image_paths_outside_the_data_root_are_refused(tmp_path):
    for image in ("../../../../../../../../etc/passwd", "/etc/passwd"):
        bad = tmp_path / "harmful.jsonl"
        row = {
            "id": "h-escape",
            "question": "q?",
            "image": image,
            "harmful_answer": "Sure, here is how.",
            "safe_answer": "I can't help with that.",
        }
        bad.write_text(json.dumps(row) + "\n")
        with pytest.raises(RecordError, match="outside the data root") as err:
            run_fit(
                tmp_path / "run",
                "--trainer.max_epochs=1",
                f"--data.init_args.harmful.init_args.path={bad}",
                "--data.init_args.num_examples=4",
            )
        assert "h-escape" in str(err.value) and "image" in str(err.value)
    assert not list((tmp_path / "run").rglob("reminder.safetensors"))


def test_defect_4_zero_training_examples_is_refused(tmp_path):
    with pytest.raises(ValueError, match="num_examples must be >= 1"):
        run_fit(tmp_path, "--trainer.max_epochs=1", "--data.init_args.num_examples=0")
    assert not list(tmp_path.rglob("reminder.safetensors"))


def test_a_prompt_too_long_for_max_length_stops_before_the_first_step(tmp_path):
    # (found by the demo: a 447-token code prompt drawn by one training seed crashed that fit mid-epoch)
    with pytest.raises(
        RecordError, match=r"leave no room for an answer within sapt.max_length=24 .*Nothing was trained"
    ):
        run_fit(tmp_path, "--trainer.max_epochs=1", "--data.init_args.sapt.max_length=24")
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("reminder.safetensors"))


def test_defect_5_resume_keeps_the_command_line_and_never_overwrites(tmp_path):
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    common = ["--data.init_args.num_examples=8"]
    half = run_fit(tmp_path / "a", "--trainer.max_epochs=1", f"--model.export_path={first}", *common)
    original = first.read_bytes()
    ckpt = half.trainer.checkpoint_callback.last_model_path
    resumed = run_fit(
        tmp_path / "b",
        "--trainer.max_epochs=2",
        f"--ckpt_path={ckpt}",
        f"--model.export_path={second}",
        "--model.schedule.threshold=0.3",
        *common,
    )
    assert resumed.model.exported_path == second and second.exists()
    assert first.read_bytes() == original  # the earlier reminder is untouched
    assert load_reminder(second).threshold == 0.3  # the command line's value, not the checkpoint's 0.2
    with pytest.raises(FileExistsError, match="overwrite_export"):
        run_fit(tmp_path / "c", "--trainer.max_epochs=2", f"--model.export_path={second}", *common)
    with pytest.raises(ValueError, match="num_tokens"):
        run_fit(
            tmp_path / "d",
            "--trainer.max_epochs=2",
            f"--ckpt_path={ckpt}",
            f"--model.export_path={tmp_path / 'third.safetensors'}",
            "--model.num_tokens=6",
            *common,
        )
