"""The evaluation run end to end on the tiny model and fixtures: outputs, resume, defences, judging later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reminder_lightning.cli import main
from reminder_lightning.defences.none import NoDefence
from reminder_lightning.evaluation.store import read_jsonl
from reminder_lightning.reminder import SafetyProbe, save_reminder
from tests.training.helpers import REPO

EVAL = str(REPO / "configs" / "eval" / "tiny.yaml")


class InterruptedDefence(NoDefence):
    """Dies on its third batch, like a job killed part-way."""

    def __init__(self, fail_at: int = 3):
        super().__init__()
        self.fail_at, self.calls = fail_at, 0

    def generate(self, images, prompts, decoding):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated kill")
        return super().generate(images, prompts, decoding)


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def run_eval(out: Path, *extra: str):
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


def test_tiny_evaluation_writes_every_output(tmp_path, capsys):
    cli = run_eval(tmp_path)
    rows = read_jsonl(tmp_path / "generations.jsonl")
    assert len(rows) == 24 and len({r["key"] for r in rows}) == 24
    assert {r["benchmark"] for r in rows} == {"tiny_harmful", "tiny_benign"}
    assert all(r["decoding"]["max_new_tokens"] == 24 and r["defence"] == {"name": "none"} for r in rows)
    figstep_like = [r for r in rows if r["judge_question"] != r["prompt"]]
    assert figstep_like  # judged against the original question, not the benign carrier prompt
    assert len(read_jsonl(tmp_path / "judgements.keyword.jsonl")) == 24
    summary = json.loads((tmp_path / "summary.json").read_text())
    by_bench = {r["benchmark"]: r for r in summary["results"]}
    harmful = by_bench["tiny_harmful"]
    assert harmful["n_harmful"] == 12 and harmful["over_refusal"] is None and harmful["gate_rate"] == 0.0
    expected_asr = (
        sum(
            v["unsafe"]
            for v in read_jsonl(tmp_path / "judgements.keyword.jsonl")
            if v["key"].startswith("tiny_harmful/")
        )
        / 12
    )
    assert harmful["asr"] == pytest.approx(expected_asr)
    assert by_bench["tiny_benign"]["asr"] is None and by_bench["tiny_benign"]["n_benign"] == 12
    assert summary["run"]["judges"] == ["keyword"] and summary["run"]["model"] == "tiny:llava"
    md = (tmp_path / "summary.md").read_text()
    assert "| tiny_harmful | none | keyword | 12 |" in md and "max_new_tokens" in md
    assert (tmp_path / "plots" / "asr_tiny_harmful_keyword.png").stat().st_size > 1000
    assert "| benchmark | defence | judge |" in capsys.readouterr().out
    assert cli.model.summary is not None
    saved = (tmp_path / "config.yaml").read_text()  # the run's full config, beside its results
    assert f"output_dir: {tmp_path}" in saved and "KeywordJudge" in saved


def test_prompts_are_batched_by_length_and_written_in_benchmark_order(tmp_path):
    cli = run_eval(tmp_path)
    lengths = [len(s.prompt) for s in cli.datamodule.todo]
    assert len(set(lengths)) > 1 and lengths == sorted(lengths, reverse=True)  # longest batch first
    assert [r["key"] for r in read_jsonl(tmp_path / "generations.jsonl")] == cli.datamodule.order
    plain = run_eval(tmp_path / "plain", "--data.sort_by_length=false")
    assert [len(s.prompt) for s in plain.datamodule.todo] != lengths  # the benchmark order is not sorted already
    assert [r["key"] for r in read_jsonl(tmp_path / "plain" / "generations.jsonl")] == cli.datamodule.order


def test_killed_evaluation_resumes_without_repeating_or_losing(tmp_path):
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_eval(tmp_path, "--model.defence=tests.evaluation.test_run.InterruptedDefence")
    partial = read_jsonl(tmp_path / "generations.rank0.jsonl")
    assert len(partial) == 12  # two batches of 6 were written before the kill
    # mark one finished answer, and leave a torn line as a kill mid-write would
    partial[0]["text"] = "MARKER: written before the kill"
    with (tmp_path / "generations.rank0.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in partial)
        f.write('{"key": "tiny_benign/eval-benign-1')
    run_eval(tmp_path)
    rows = read_jsonl(tmp_path / "generations.jsonl")
    keys = [r["key"] for r in rows]
    assert len(keys) == 24 and len(set(keys)) == 24  # nothing lost, nothing twice
    assert [r for r in rows if r["key"] == partial[0]["key"]][0]["text"].startswith("MARKER")  # not regenerated
    assert not list(tmp_path.glob("generations.rank*.jsonl"))
    # a third run finds everything done: no generation, same report
    run_eval(tmp_path)
    assert len(read_jsonl(tmp_path / "generations.jsonl")) == 24
    assert len(read_jsonl(tmp_path / "judgements.keyword.jsonl")) == 24


def test_safety_reminder_defence_gates_and_reports_p_safe(tmp_path, adapters):
    hidden = adapters["llava"].hidden_size
    probe = SafetyProbe(hidden, 2)
    probe.components.copy_(torch.randn(2, hidden, generator=torch.Generator().manual_seed(0)))
    probe.coef.copy_(torch.tensor([2.0, -2.0]))
    artifact = save_reminder(
        tmp_path / "reminder.safetensors",
        torch.randn(4, hidden) * 0.2,
        probe,
        {"interval": 8, "threshold": 0.5, "model_type": "llava"},
    )
    out = tmp_path / "eval"
    run_eval(
        out,
        "--model.defence=reminder_lightning.defences.safety_reminder.SafetyReminderDefence",
        f"--model.defence.artifact={artifact}",
    )
    rows = read_jsonl(out / "generations.jsonl")
    for r in rows:  # checks after 7, 15, 23 tokens; a flagged sample stops being checked at its flag
        steps = [step for step, _ in r["checks"]]
        assert steps == [7, 15, 23][: len(steps)]
        if r["flagged"]:
            assert steps[-1] == r["flag_step"]
        elif r["finish_reason"] == "length":
            assert len(steps) == 3
    assert rows[0]["defence"]["name"] == "safety_reminder" and rows[0]["defence"]["threshold"] == 0.5
    summary = {r["benchmark"]: r for r in json.loads((out / "summary.json").read_text())["results"]}
    flagged = sum(r["flagged"] for r in rows if r["benchmark"] == "tiny_harmful") / 12
    assert summary["tiny_harmful"]["gate_rate"] == pytest.approx(flagged)
    assert 0.0 <= summary["tiny_harmful"]["mean_p_safe_harmful"] <= 1.0
    assert (out / "plots" / "p_safe_hist.png").exists()


def test_judge_command_rejudges_saved_generations(tmp_path):
    run_eval(tmp_path)
    (tmp_path / "summary.json").unlink()
    summary = main(["judge", f"--output_dir={tmp_path}"])
    assert (tmp_path / "summary.json").exists() and len(summary) == 2
    assert len(read_jsonl(tmp_path / "judgements.keyword.jsonl")) == 24  # verdicts reused, not appended again
    with pytest.raises(FileNotFoundError, match="No generations"):
        main(["judge", f"--output_dir={tmp_path / 'empty'}"])


def test_periodic_eval_callback_logs_and_keeps_state(tmp_path):
    from tests.training.helpers import run_fit, step_losses

    cli = run_fit(
        tmp_path,
        "--trainer.max_epochs=2",
        "--data.init_args.num_examples=8",
        "--trainer.callbacks+=reminder_lightning.callbacks.periodic_eval.PeriodicSafetyEval",
        "--trainer.callbacks.benchmarks+=reminder_lightning.evaluation.benchmarks.generic.GenericBenchmark",
        "--trainer.callbacks.benchmarks.path=data/tiny/eval/harmful.jsonl",
        "--trainer.callbacks.benchmarks.name=tiny_harmful",
        "--trainer.callbacks.max_samples=3",
        "--trainer.callbacks.max_new_tokens=8",
        "--model.schedule.interval=4",
    )
    asr = step_losses(cli, "val/tiny_harmful/asr")
    gate = step_losses(cli, "val/tiny_harmful/gate_rate")
    assert len(asr) == 2 and all(0.0 <= v <= 1.0 for v in asr.values())
    assert all(v == 1.0 for v in gate.values())  # no probe: mode always, every sample keeps the reminder
    ckpt = torch.load(cli.trainer.checkpoint_callback.last_model_path, map_location="cpu", weights_only=False)
    state = next(v for k, v in ckpt["callbacks"].items() if "PeriodicSafetyEval" in k)
    assert [h["epoch"] for h in state["history"]] == [0, 1]


def test_wandb_sample_table_is_logged_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    out = tmp_path / "eval"
    main(
        [
            "test",
            "--config",
            EVAL,
            f"--model.output_dir={out}",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=reminder_lightning.loggers.AutoWandbLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.logger.init_args.project=reminder-tests",
            "--model.wandb_samples=4",
        ]
    )
    run_dir = next((tmp_path / "wandb").glob("offline-run-*"))
    tables = list(run_dir.rglob("eval/samples*.table.json"))
    assert tables, sorted(p.name for p in run_dir.rglob("*"))[:20]
    table = json.loads(tables[0].read_text())
    assert len(table["data"]) == 4 and "answer" in table["columns"] and "image" in table["columns"]
    image_col = table["columns"].index("image")
    assert table["data"][0][image_col] is not None  # the first fixture sample has an image


@pytest.mark.slow
def test_two_process_evaluation_shards_and_merges_every_sample_once(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "reminder_lightning",
        "test",
        "--config",
        EVAL,
        f"--model.output_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--data.batch_size=4",
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = read_jsonl(tmp_path / "generations.jsonl")
    assert len(rows) == 24 and len({r["key"] for r in rows}) == 24
    assert not list(tmp_path.glob("generations.rank*.jsonl"))
    single = tmp_path / "single"
    run_eval(single)
    by_key = {r["key"]: r["text"] for r in read_jsonl(single / "generations.jsonl")}
    assert all(by_key[r["key"]] == r["text"] for r in rows)  # sharding changes nothing but the speed
    assert (
        json.loads((tmp_path / "summary.json").read_text())["results"]
        == json.loads((single / "summary.json").read_text())["results"]
    )
