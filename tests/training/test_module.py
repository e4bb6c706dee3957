"""In-process fits through the real CLI on tiny models of every family."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from reminder_lightning.data.records import RecordError
from reminder_lightning.reminder import SafetyProbe, load_reminder
from reminder_lightning.reminder.artifact import load_probe, save_probe
from tests.conftest import FAMILIES, FAMILY_NAMES
from tests.training.helpers import REPO, epoch_means, run_fit, step_losses


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the configs name data files relative to the repository


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_each_family_exports_a_reminder(tmp_path, family):
    cli = run_fit(
        tmp_path,
        f"--model.vlm.name_or_path=tiny:{family}",
        "--trainer.max_epochs=1",
        "--data.init_args.num_examples=8",
    )
    path = cli.model.exported_path
    assert path is not None and path.exists() and path.name == "reminder.safetensors"
    assert path.parent == Path(cli.trainer.log_dir)
    art = load_reminder(path)
    assert art.soft_prompt.shape == (4, cli.model.vlm.hidden_size) and art.probe is None
    meta = art.metadata
    assert meta["base_model"] == f"tiny:{family}" and meta["model_type"] == family  # the twins' model types
    assert meta["family"] == FAMILY_NAMES[family]
    assert meta["interval"] == "16" and meta["threshold"] == "0.2"
    assert meta["init_text"].startswith("Refuse if partial output is unsafe")
    assert json.loads(meta["config"])["num_tokens"] == 4
    losses = step_losses(cli)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    # the trained vectors moved away from their text initialisation
    assert not torch.allclose(art.soft_prompt, cli.model.soft_prompt.weight.detach().new_zeros(1))


def test_tiny_config_loss_falls_and_checkpoint_is_kilobytes(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = run_fit(tmp_path)  # configs/tiny.yaml as shipped (no validation data)
    noise = [
        str(w.message) for w in caught if "Total length of" in str(w.message) or "eval mode" in str(w.message)
    ]
    assert not noise  # neither Lightning's empty-validation nor its eval-mode warning reaches the user
    means = epoch_means(cli)
    assert len(means) == 10
    assert means[-1] < means[0] - 0.3, means
    ckpt = Path(cli.trainer.checkpoint_callback.last_model_path)
    assert ckpt.exists()
    size_kb = ckpt.stat().st_size / 1024
    assert size_kb < 64, f"checkpoint is {size_kb:.1f} KB"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert set(state["state_dict"]) == {"soft_prompt.weight"}
    frozen = sum(p.numel() for p in cli.model.vlm.parameters())
    assert frozen > 100 * 4 * 64  # the frozen model is far larger than what was saved
    assert all(not p.requires_grad for p in cli.model.vlm.parameters())
    assert not cli.model.vlm.training  # frozen VLM kept in eval mode during fit


def test_resume_continues_the_same_loss_curve(tmp_path):
    common = ["--trainer.max_epochs=4", "--data.init_args.num_examples=16"]
    full = run_fit(tmp_path / "full", *common)
    half = run_fit(tmp_path / "half", "--trainer.max_epochs=2", "--data.init_args.num_examples=16")
    ckpt = half.trainer.checkpoint_callback.last_model_path
    resumed = run_fit(tmp_path / "resumed", *common, f"--ckpt_path={ckpt}")
    a, b = step_losses(full), step_losses(resumed)
    later = [s for s in a if s >= 8]  # epochs 2 and 3 (4 steps per epoch)
    assert later and all(s in b for s in later)
    for s in later:
        assert a[s] == pytest.approx(b[s], rel=1e-5, abs=1e-6), (s, a[s], b[s])
    # two fresh runs of the same config already differ by ~1e-6 on CPU (threaded kernels), so compare with a
    # tolerance well above that noise and well below what one epoch of training moves the vectors
    torch.testing.assert_close(full.model.soft_prompt.weight, resumed.model.soft_prompt.weight, rtol=0, atol=1e-4)
    # and a resumed run is not a restart: its first logged step is after the checkpoint
    assert min(b) == 8


def _prompt_end_states(adapter, records):
    from reminder_lightning.data.records import load_image

    states = []
    with torch.no_grad():
        for rec in records:
            enc = adapter.inputs.encode_prompt(rec.question, load_image(rec) if rec.image else None)
            out = adapter.model(**enc, output_hidden_states=True)
            states.append(out.hidden_states[-1][0, -1])
    return torch.stack(states)


def _tiny_probe_file(tmp_path, adapters):
    from reminder_lightning.data.sources import LocalRecords

    harmful = LocalRecords(str(REPO / "data/tiny/harmful.jsonl"), kind="harmful").load()
    benign = LocalRecords(str(REPO / "data/tiny/benign.jsonl"), kind="benign").load()
    adapter = adapters["llava"]
    hidden = torch.cat([_prompt_end_states(adapter, harmful), _prompt_end_states(adapter, benign)])
    labels = torch.cat([torch.zeros(len(harmful)), torch.ones(len(benign))])
    return save_probe(tmp_path / "probe.safetensors", SafetyProbe.fit(hidden, labels, num_components=4))


def test_fit_with_probe_adds_the_classification_term(tmp_path, adapters):
    probe_file = _tiny_probe_file(tmp_path, adapters)
    cli = run_fit(tmp_path, f"--model.probe_path={probe_file}", "--model.cls_weight=1.0", "--trainer.max_epochs=4")
    cls = epoch_means(cli, "train/cls_loss")
    assert len(cls) == 4 and cls[-1] < cls[0], cls
    total, lm = step_losses(cli, "train/loss"), step_losses(cli, "train/lm_loss")
    cls_steps = step_losses(cli, "train/cls_loss")
    for s in total:
        assert total[s] == pytest.approx(lm[s] + 1.0 * cls_steps[s], rel=1e-5)
    art = load_reminder(cli.model.exported_path)
    assert art.probe is not None and art.probe.num_components == 4
    ckpt = torch.load(cli.trainer.checkpoint_callback.last_model_path, map_location="cpu", weights_only=False)
    assert {"soft_prompt.weight", "probe.mean", "probe.coef"} <= set(ckpt["state_dict"])


def test_train_probe_trains_the_head_with_the_reminder_and_exports_it(tmp_path, adapters):
    probe_file = _tiny_probe_file(tmp_path, adapters)
    given = load_probe(probe_file)
    cli = run_fit(
        tmp_path, f"--model.probe_path={probe_file}", "--model.cls_weight=1.0", "--model.train_probe=true",
        "--trainer.max_epochs=2",
    )  # fmt: skip
    trained = {id(p) for group in cli.trainer.optimizers[0].param_groups for p in group["params"]}
    assert id(cli.model.probe.coef) in trained and id(cli.model.soft_prompt.weight) in trained
    art = load_reminder(cli.model.exported_path)
    assert not torch.allclose(art.probe.coef, given.coef)  # the head moved ...
    assert torch.equal(art.probe.components, given.components) and torch.equal(
        art.probe.mean, given.mean
    )  # PCA kept


def test_train_probe_without_a_probe_is_refused(tmp_path):
    with pytest.raises(ValueError, match="train_probe.*no model.probe_path"):
        run_fit(tmp_path, "--model.train_probe=true", "--trainer.max_epochs=1")


def test_probe_for_another_model_is_refused(tmp_path):
    probe_file = save_probe(tmp_path / "p.safetensors", SafetyProbe(hidden_size=13))
    with pytest.raises(ValueError, match="hidden size 13.*Refit"):
        run_fit(tmp_path, f"--model.probe_path={probe_file}", "--trainer.max_epochs=1")


def test_wandb_logger_runs_offline_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    cli = run_fit(
        tmp_path,
        "--trainer.max_epochs=1",
        "--data.init_args.num_examples=8",
        "--trainer.logger=reminder_lightning.loggers.AutoWandbLogger",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.logger.init_args.project=reminder-tests",
    )
    assert cli.trainer.logger._offline is True
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_missing_image_fails_naming_file_record_and_field(tmp_path):
    bad = tmp_path / "harmful.jsonl"
    bad.write_text(
        json.dumps(
            {
                "id": "h-broken",
                "question": "q?",
                "image": "nowhere.png",
                "harmful_answer": "Sure, here is how you do it step by step.",
                "safe_answer": "I can't help with that.",
            }
        )
        + "\n"
    )
    with pytest.raises(RecordError) as err:
        run_fit(
            tmp_path,
            "--trainer.max_epochs=1",
            f"--data.init_args.harmful.init_args.path={bad}",
            "--data.init_args.num_examples=4",
        )
    message = str(err.value)
    assert str(bad) in message and "h-broken" in message and "image" in message and "nowhere.png" in message


def test_wrong_field_name_fails_at_setup_with_the_fix(tmp_path):
    bad = tmp_path / "benign.jsonl"
    bad.write_text(json.dumps({"id": "b1", "prompt": "q?", "safe_answer": "An answer of enough length."}) + "\n")
    with pytest.raises(RecordError, match="question") as err:
        run_fit(tmp_path, "--trainer.max_epochs=1", f"--data.init_args.benign.init_args.path={bad}")
    assert str(bad) in str(err.value) and "fields." in str(err.value)


def test_unknown_config_key_is_rejected(tmp_path):
    with pytest.raises(SystemExit):
        run_fit(tmp_path, "--model.num_tokenz=3")


def test_lr_schedule_follows_warmup_then_decays_to_zero_at_the_last_step(tmp_path):
    from reminder_lightning.training.lr_schedule import LRSchedule, lr_factor

    cli = run_fit(
        tmp_path, "--model.lr_schedule=cosine", "--model.warmup_fraction=0.25", "--trainer.max_epochs=2",
        "--data.init_args.num_examples=16", "--trainer.log_every_n_steps=1",
    )  # fmt: skip
    lrs = step_losses(cli, "train/lr")
    total = cli.trainer.global_step
    assert total == 8 and sorted(lrs) == list(range(total))
    base = cli.trainer.optimizers[0].param_groups[0]["initial_lr"]
    for step, lr in lrs.items():  # the rate each step ran with: 2 warm-up steps, then half a cosine
        assert lr == pytest.approx(base * lr_factor(LRSchedule.cosine, step, total, 2), rel=1e-6), (step, lr)
    assert lrs[0] == pytest.approx(base / 2) and lrs[1] == pytest.approx(base)
    assert lrs[2] == pytest.approx(base) and all(lrs[s + 1] < lrs[s] for s in range(2, total - 1))
    assert 0 < lrs[total - 1] < 0.1 * base  # the last step still moves the vectors, a little
    constant = step_losses(run_fit(tmp_path / "constant", "--trainer.max_epochs=1"), "train/lr")
    # the default keeps the reference's constant rate
    assert constant and all(v == pytest.approx(base) for v in constant.values())


def test_lr_schedule_settings_are_checked(tmp_path):
    from reminder_lightning.training.lr_schedule import LRSchedule, lr_factor

    assert lr_factor(LRSchedule.linear, 3, 4, 0) == pytest.approx(0.25)
    assert lr_factor(LRSchedule.cosine, 0, 4, 0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="warmup_fraction must be in"):
        run_fit(tmp_path, "--model.warmup_fraction=1.0")
