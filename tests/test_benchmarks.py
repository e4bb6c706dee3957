"""The benchmark scripts run (tiny preset) and print what they promise; speed itself is not asserted."""

import json
import subprocess
import sys

import pytest

from tests.training.helpers import REPO


def _json_rows(script: str, *args: str) -> list[dict]:
    """Run a generation benchmark on the tiny preset (batch 1 and 2, interval 8, one repeat); its JSON rows."""
    command = [
        sys.executable,
        script,
        "--preset",
        "tiny",
        "--batch",
        "1",
        "2",
        "--interval",
        "8",
        "--repeats",
        "1",
    ]
    done = subprocess.run([*command, *args, "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_generation_overhead_benchmark_prints_one_json_object_per_configuration():
    rows = _json_rows("benchmarks/generation_overhead.py", "--new-tokens", "20")
    assert [(r["scenario"], r["batch"]) for r in rows] == [
        ("benign", 1),
        ("benign", 2),
        ("harmful", 1),
        ("harmful", 2),
    ]
    for r in rows:
        for key in ("undefended_s", "reminder_s", "reminder_never_s", "recompute_s", "reminder_ratio"):
            assert r[key] > 0
        assert r["reminder_ratio"] == r["reminder_s"] / r["undefended_s"]
        assert r["image_tokens"] == 64 and r["checks_per_sample"] == 2
        # flags fire only where they should: at the first check (after interval - 1 tokens) when harmful
        harmful = r["scenario"] == "harmful"
        assert r["flag_step"] == (7 if harmful else None)
        assert (r["reference_restart_s"] is not None) == harmful and (r["reference_restart_ratio"] or 1) > 0


def test_gpu_smoke_runs_the_recipe_on_the_tiny_twin(tmp_path):
    """benchmarks/gpu_smoke.py is ready for a GPU: the same script on the CPU with the tiny LLaVA."""
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_smoke.py", "--model", "tiny:llava", "--device", "cpu", "--steps", "2",
         "--prompts", "2", "--new-tokens", "6", "--work-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert result["fit"]["steps"] == 2 and result["fit"]["exported"] and result["fit"]["median_step_seconds"] > 0
    fit = result["fit"]
    # 4 examples with their image tokens; no peak given
    assert fit["tokens_per_step"] > 4 * 16 and fit["mfu"] is None
    assert fit["tokens_per_second"] == pytest.approx(fit["tokens_per_step"] / fit["median_step_seconds"], rel=0.5)
    assert fit["model_tflops"] > 0 and fit["gradient_checkpointing"] is False
    assert result["generate"]["batch"] == 2 and result["generate"]["tokens_per_second"] > 0
    assert result["test_command"]["answers"] == 2 and result["gpu"] is None


def test_generation_profile_parts_add_up_and_count_the_loop_steps():
    """16 new tokens, interval 8: 15 decode forwards (the loop stops after the 16th pick, before a forward), checks
    after 7 and 15 tokens when benign; when harmful every sample is flagged at 7 and, as
    ``keep_checking_after_flag`` is off by default, not checked again."""
    rows = _json_rows("benchmarks/generation_profile.py", "--new-tokens", "16", "--threads", "1")
    assert [(r["scenario"], r["batch"]) for r in rows] == [
        ("benign", 1),
        ("benign", 2),
        ("harmful", 1),
        ("harmful", 2),
    ]
    parts = ("encode", "prefill", "decode", "check", "pick", "other")
    for r in rows:
        assert all(r[f"{p}_s"] >= 0 for p in (*parts, "check_forward", "check_probe")) and r["total_s"] > 0
        assert abs(sum(r[f"{p}_s"] for p in parts) - r["total_s"]) <= 1e-6 * r["total_s"]
        assert abs(sum(r[f"{p}_share"] for p in parts) - 1) <= 1e-6
        assert abs(r["check_forward_s"] + r["check_probe_s"] - r["check_s"]) <= 1e-6 * r["total_s"]
        assert r["decode_ms_per_step"] == 1000 * r["decode_s"] / 15
        harmful = r["scenario"] == "harmful"
        assert (r["decode_steps"], r["pick_calls"], r["checks"]) == (15, 16, 1 if harmful else 2)
        assert r["flag_step"] == (7 if harmful else None)


def test_evaluation_throughput_runs_the_test_command_per_defence_batch_and_sorting(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/evaluation_throughput.py", "--model", "tiny:llava", "--prompts", "6",
         "--long-share", "0.34", "--batch", "3", "--new-tokens", "20", "--work-dir", str(tmp_path), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]  # stdout holds only the JSON objects
    assert [(r["defence"], r["batch"], r["sorted"]) for r in rows] == [
        (d, 3, s) for d in ("none", "gated", "always") for s in (False, True)
    ]
    for r in rows:
        assert r["answers"] == 6 and r["generation_s"] > 0
        assert r["answers_per_s"] == pytest.approx(6 / r["generation_s"], rel=1e-2)
        assert (r["ratio_vs_unsorted"] is None) == (not r["sorted"])
    none = {(r["batch"], r["sorted"]): r for r in rows if r["defence"] == "none"}
    for r in rows:
        assert r["ratio_vs_none"] == round(r["generation_s"] / none[(r["batch"], r["sorted"])]["generation_s"], 3)
    # the gated reminder checked every answer and flagged none; always-on kept it at the first check
    from reminder_lightning.evaluation.store import read_jsonl

    gated = read_jsonl(tmp_path / "eval" / "gated-b3-sorted" / "generations.jsonl")
    always = read_jsonl(tmp_path / "eval" / "always-b3-sorted" / "generations.jsonl")
    assert any(g["checks"] for g in gated) and not any(g["flagged"] for g in gated)
    assert any(a["checks"] for a in always) and all(a["flagged"] for a in always if a["checks"])
    long = [p for p in (tmp_path / "data" / "prompts.jsonl").read_text().splitlines() if "def summarise" in p]
    assert len(long) == 2
