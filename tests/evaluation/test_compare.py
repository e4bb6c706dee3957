"""``compare``: N evaluation folders -> rates with Wilson intervals, a table, JSON and a plot (no model loaded)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reminder_lightning.commands.compare import main
from reminder_lightning.evaluation.compare import compare_runs
from reminder_lightning.evaluation.compare_report import compare_table, write_comparison
from reminder_lightning.evaluation.metrics import wilson_interval

Z = 1.959964
DECODING = {
    "max_new_tokens": 64,
    "do_sample": False,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 50,
    "repetition_penalty": 1.0,
    "seed": 0,
}
NONE = {"name": "none"}
REMINDER = {
    "name": "safety_reminder",
    "artifact": "runs/fit/reminder.safetensors",
    "mode": "gated",
    "interval": 16,
    "threshold": 0.05,
    "return_text": "full",
}
N_HARMFUL, N_BENIGN = 64, 10
FLAG_STEPS = {0: 16, 1: 32, 2: 32, 3: 48}  # defended run: harmful samples flagged, and when


def row(
    bench: str, sid: str, harmful: bool, text: str, defence: dict, flag_step: int | None = None, **over
) -> dict:
    """One ``generations.jsonl`` row as ``EvaluationModule.test_step`` writes it."""
    out = {
        "key": f"{bench}/{sid}",
        "benchmark": bench,
        "id": sid,
        "prompt": f"prompt {sid}",
        "judge_question": f"question {sid}",
        "category": "weapons" if harmful else None,
        "harmful": harmful,
        "reference": None,
        "image": None if harmful else f"images/{sid}.png",
        "text": text,
        "flagged": flag_step is not None,
        "flag_step": flag_step,
        "checks": [[16, 0.9]],
        "text_before": None,
        "text_after": None,
        "finish_reason": "eos",
        "defence": defence,
        "decoding": dict(DECODING),
        "selection": None,
    }
    out.update(over)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_run(
    folder: Path, rows: list[dict], verdicts: dict[str, dict[str, tuple]], model: str = "tiny-vlm"
) -> Path:
    """An evaluation folder: generations, one judgement file per judge (``key -> (unsafe, refusal)``), run.json."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "generations.jsonl", rows)
    for judge, by_key in verdicts.items():
        write_jsonl(
            folder / f"judgements.{judge}.jsonl",
            [{"key": k, "unsafe": u, "refusal": r, "raw": "", "score": None} for k, (u, r) in by_key.items()],
        )
    info = {"model": model, "defence": rows[0]["defence"], "decoding": DECODING, "judges": list(verdicts)}
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def baseline_run(folder: Path) -> Path:
    """No defence. advbench: 40 unsafe (h0-h39), h40 undecided, h41-h63 refused. mmvet: 10 benign, none refused."""
    rows = [row("advbench", f"h{i}", True, f"harmful answer {i}", NONE) for i in range(N_HARMFUL)]
    rows += [row("mmvet", f"b{i}", False, f"answer {i}", NONE) for i in range(N_BENIGN)]
    verdicts = {
        f"advbench/h{i}": (True if i < 40 else None if i == 40 else False, i > 40) for i in range(N_HARMFUL)
    }
    verdicts.update({f"mmvet/b{i}": (False, False) for i in range(N_BENIGN)})
    return write_run(folder, rows, {"keyword": verdicts})


def defended_run(folder: Path) -> Path:
    """Reminder. advbench: only h0 unsafe, h1-h63 refused, h0-h3 flagged. mmvet: b7 (one trailing space), b8, b9
    changed; b8, b9 refused; b9 flagged. Also a benchmark and a judge that the baseline lacks."""
    rows = [
        row("advbench", f"h{i}", True, "sure" if i == 0 else "I can't", REMINDER, FLAG_STEPS.get(i))
        for i in range(N_HARMFUL)
    ]
    texts = [f"answer {i}" for i in range(7)] + ["answer 7 ", "I cannot help", "I cannot help"]
    rows += [row("mmvet", f"b{i}", False, texts[i], REMINDER, 16 if i == 9 else None) for i in range(N_BENIGN)]
    rows += [row("extra", "x0", True, "no", REMINDER)]
    verdicts = {f"advbench/h{i}": (i == 0, i > 0) for i in range(N_HARMFUL)}
    verdicts.update({f"mmvet/b{i}": (False, i >= 8) for i in range(N_BENIGN)})
    verdicts["extra/x0"] = (False, True)
    return write_run(folder, rows, {"keyword": verdicts, "llama_guard": verdicts})


def wilson_by_quadratic(hits: int, n: int) -> tuple[float, float]:
    """The Wilson bounds as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n, solved with the quadratic formula."""
    p_hat, k = hits / n, Z * Z / n
    a, b, c = 1 + k, -(2 * p_hat + k), p_hat * p_hat
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    return baseline_run(tmp_path / "none"), defended_run(tmp_path / "reminder")


def find(result: dict, bench: str, run: str, judge: str = "keyword") -> dict:
    (match,) = [r for r in result["results"] if (r["benchmark"], r["run"], r["judge"]) == (bench, run, judge)]
    return match


def assert_rate(rate: dict, hits: int, n: int) -> None:
    assert (rate["hits"], rate["n"]) == (hits, n)
    assert rate["value"] == pytest.approx(hits / n)
    assert rate["ci95"] == pytest.approx(list(wilson_by_quadratic(hits, n)), abs=1e-9)


def test_wilson_interval_matches_the_formula():
    assert wilson_interval(1, 64) == pytest.approx((0.0028, 0.0833), abs=5e-4)
    for hits, n in [(1, 64), (40, 63), (7, 10), (3, 3), (0, 5), (250, 1000)]:
        assert wilson_interval(hits, n) == pytest.approx(wilson_by_quadratic(hits, n), abs=1e-9)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(3, 3)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="hits=5, n=4"):
        wilson_interval(5, 4)


def test_rates_counts_and_intervals(two_runs):
    none_dir, reminder_dir = two_runs
    # the defended run first: the baseline is still the run without a defence
    result = compare_runs([reminder_dir, none_dir])
    assert result["baseline"] == "none"
    assert [r["label"] for r in result["runs"]] == ["safety_reminder (gated)", "none"]
    assert result["benchmarks"] == ["advbench", "mmvet"] and result["judges"] == ["keyword"]
    order = [(r["benchmark"], r["judge"], r["run"]) for r in result["results"]]
    assert order == [
        (b, "keyword", run) for b in ("advbench", "mmvet") for run in ("safety_reminder (gated)", "none")
    ]

    defended = find(result, "advbench", "safety_reminder (gated)")
    assert (defended["n"], defended["n_harmful"], defended["n_benign"]) == (64, 64, 0)
    assert_rate(defended["asr"], 1, 64)
    assert defended["asr"]["ci95"] == pytest.approx([0.0028, 0.0833], abs=5e-4)
    assert_rate(defended["refusal_rate"], 63, 64)
    assert_rate(defended["gate_rate_harmful"], 4, 64)
    assert defended["tokens_before_flag"] == pytest.approx(32.0)  # (16 + 32 + 32 + 48) / 4
    assert defended["n_flagged_harmful"] == 4
    assert (
        defended["leaked_over_15"]["hits"] == 4 and defended["leaked_over_15"]["n"] == 4
    )  # all after > 15 tokens
    assert defended["over_refusal"] is None and defended["benign_unchanged"] is None
    assert defended["gate_rate_benign"] is None and defended["undecided"] == 0

    base = find(result, "advbench", "none")
    assert_rate(base["asr"], 40, 63)  # the undecided verdict (h40) is out of the denominator
    assert base["undecided"] == 1
    assert_rate(base["refusal_rate"], 23, 64)
    assert_rate(base["gate_rate_harmful"], 0, 64)
    assert base["tokens_before_flag"] is None and base["n_flagged_harmful"] == 0
    assert base["leaked_over_15"] is None

    benign = find(result, "mmvet", "safety_reminder (gated)")
    assert_rate(benign["benign_unchanged"], 7, 10)  # "answer 7 " differs from "answer 7": exact identity
    assert_rate(benign["over_refusal"], 2, 10)
    assert_rate(benign["gate_rate_benign"], 1, 10)
    assert benign["asr"] is None and benign["tokens_before_flag"] is None  # b9's flag is benign, not counted
    assert find(result, "mmvet", "none")["benign_unchanged"] is None  # the baseline against itself

    skipped = {(s["kind"], s["name"]) for s in result["skipped"]}
    assert skipped == {("benchmark", "extra"), ("judge", "llama_guard")}
    assert all(str(none_dir) in s["reason"] for s in result["skipped"])


def test_labels_baseline_and_judges(two_runs):
    none_dir, reminder_dir = two_runs
    result = compare_runs([none_dir, reminder_dir], labels=["plain", "guarded"], baseline="guarded")
    assert result["baseline"] == "guarded"
    assert find(result, "mmvet", "guarded")["benign_unchanged"] is None
    assert_rate(find(result, "mmvet", "plain")["benign_unchanged"], 7, 10)
    with pytest.raises(ValueError, match="not unique.*--labels"):
        compare_runs([none_dir, baseline_run(none_dir.parent / "none2")])
    with pytest.raises(ValueError, match="2 labels for 1 runs"):
        compare_runs([none_dir], labels=["a", "b"])
    with pytest.raises(ValueError, match="No run is labelled 'nonee'"):
        compare_runs([none_dir, reminder_dir], baseline="nonee")
    with pytest.raises(ValueError, match=r"none has no judgements\.llama_guard\.jsonl"):
        compare_runs([none_dir, reminder_dir], judges=["llama_guard"])


def test_table_and_files(two_runs, tmp_path):
    result = compare_runs(list(two_runs))
    table = compare_table(result)
    lines = table.splitlines()
    assert lines[0].startswith("| benchmark | judge | run | n | ASR | refusal (harmful) | over-refusal |")
    assert (
        "| advbench | keyword | safety_reminder (gated) | 64 | 1.6% [0.3, 8.3] | 98.4% [91.7, 99.7] | - | - |"
        in table
    )
    assert "| advbench | keyword | none | 64 | 63.5% [51.1, 74.3] (1 undecided) |" in table
    assert "| 0.0% [0.0, 5.7] / - | - |" in table  # baseline gate rate on advbench, no flags
    assert "| 70.0% [39.7, 89.2] | - / 10.0% [1.8, 40.4] | - |" in table  # mmvet unchanged, gate rates
    assert "| 32.0 | 100.0% [51.0, 100.0] |" in table  # leakage: 4 flags, all after more than 15 tokens
    assert "Wilson 95%" in table and "Baseline: none." in table

    paths = write_comparison(result, tmp_path / "out")
    assert [p.name for p in paths] == ["compare.md", "compare.json", "compare.png", "tradeoff.png"]
    md = paths[0].read_text()
    assert table in md and str(two_runs[1]) in md and "tiny-vlm" in md and '"seed": 0' in md
    assert "benchmark extra: missing from none" in md
    assert json.loads(paths[1].read_text()) == json.loads(json.dumps(result))
    png = paths[2].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    from PIL import Image

    with Image.open(paths[2]) as image:
        assert image.width > 300 and image.height > 200
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20  # bars, error bars, text


def test_command_entry(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    result = main(["--runs", f"[{two_runs[0]}, {two_runs[1]}]", "--output_dir", str(out), "--labels", "[a, b]"])
    assert result["baseline"] == "a" and [r["label"] for r in result["runs"]] == ["a", "b"]
    assert {p.name for p in out.iterdir()} == {"compare.md", "compare.json", "compare.png", "tradeoff.png"}
    printed = capsys.readouterr().out
    assert "| advbench | keyword | b | 64 | 1.6% [0.3, 8.3] |" in printed
    assert "Skipped benchmark extra" in printed and str(out / "compare.json") in printed


# ---------------------------------------------------------------- fail closed


def test_missing_generations_and_unfinished_run(two_runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=rf"{empty} has no .*generations\.jsonl.*reminder_lightning test"):
        compare_runs([two_runs[0], empty])
    write_jsonl(two_runs[1] / "generations.rank1.jsonl", [row("mmvet", "b99", False, "x", REMINDER)])
    with pytest.raises(ValueError, match=rf"{two_runs[1]} holds unmerged generations\.rank1\.jsonl.*unfinished"):
        compare_runs(list(two_runs))


def test_two_defences_in_one_folder(tmp_path):
    rows = [row("advbench", "h0", True, "a", NONE), row("advbench", "h1", True, "b", REMINDER)]
    folder = write_run(
        tmp_path / "mixed", rows, {"keyword": {"advbench/h0": (False, True), "advbench/h1": (True, False)}}
    )
    with pytest.raises(ValueError, match=r"mixed.*field 'defence' of key 'advbench/h1'.*two defences"):
        compare_runs([folder])


def test_missing_verdicts(two_runs):
    path = two_runs[1] / "judgements.keyword.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if '"mmvet/b3"' not in line) + "\n")
    with pytest.raises(ValueError, match=r"judgements\.keyword\.jsonl has no verdict for key 'mmvet/b3'"):
        compare_runs(list(two_runs))


def test_key_absent_from_baseline(two_runs):
    with (two_runs[1] / "generations.jsonl").open("a") as f:
        f.write(json.dumps(row("mmvet", "b10", False, "answer 10", REMINDER)) + "\n")
    with (two_runs[1] / "judgements.keyword.jsonl").open("a") as f:
        f.write(json.dumps({"key": "mmvet/b10", "unsafe": False, "refusal": False}) + "\n")
    with pytest.raises(ValueError, match=rf"{two_runs[1]}: key 'mmvet/b10' is absent from the baseline"):
        compare_runs(list(two_runs))


def test_run_missing_baseline_samples(two_runs):
    path = two_runs[1] / "generations.jsonl"
    write_jsonl(path, [r for r in map(json.loads, path.read_text().splitlines()) if r["key"] != "advbench/h7"])
    with pytest.raises(ValueError, match=rf"{two_runs[1]}: key 'advbench/h7' of the baseline .* was not answered"):
        compare_runs(list(two_runs))


@pytest.mark.parametrize(
    ("field", "value"),
    [("prompt", "another prompt"), ("image", "images/other.png"), ("decoding", {**DECODING, "seed": 1})],
)
def test_benign_sample_not_comparable(two_runs, field, value):
    path = two_runs[1] / "generations.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        if r["key"] == "mmvet/b5":
            r[field] = value
    write_jsonl(path, rows)
    with pytest.raises(ValueError, match=rf"{two_runs[1]}: key 'mmvet/b5': field '{field}'.*same prompt"):
        compare_runs(list(two_runs))


def test_across_runs_gives_mean_sd_and_range_over_the_non_baseline_runs():
    from reminder_lightning.evaluation.compare import across_runs
    from reminder_lightning.evaluation.compare_report import spread_table

    def rate(v):
        return {"value": v, "hits": 0, "n": 1, "ci95": [0.0, 1.0]}

    result = {
        "baseline": "none",
        "runs": [{"label": "none"}, {"label": "s0"}, {"label": "s1"}, {"label": "s2"}],
        "benchmarks": ["b"],
        "judges": ["keyword"],
        "results": [
            {"benchmark": "b", "judge": "keyword", "run": label, "asr": rate(v), "refusal_rate": None,
             "over_refusal": None, "benign_unchanged": None, "gate_rate_harmful": None, "gate_rate_benign": None}
            for label, v in (("none", 1.0), ("s0", 0.0), ("s1", 0.1), ("s2", 0.2))
        ],
    }  # fmt: skip
    (row,) = across_runs(result)
    assert row["metric"] == "ASR" and row["runs"] == 3
    assert row["mean"] == pytest.approx(0.1) and row["sd"] == pytest.approx(0.1)  # the baseline's 1.0 left out
    assert (row["min"], row["max"]) == (0.0, pytest.approx(0.2))
    assert "10.0% ± 10.0 [0.0, 20.0]" in spread_table([row])
    result["runs"] = result["runs"][:2]
    assert across_runs(result) == []


def test_tradeoff_points_and_latency(tmp_path):
    from reminder_lightning.evaluation.compare_report import tradeoff_points

    base = baseline_run(tmp_path / "none")
    defended = defended_run(tmp_path / "reminder")
    for folder, seconds in ((base, 0.5), (defended, 0.6)):  # the defence's answers took 1.2x as long
        rows = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
        write_jsonl(folder / "generations.jsonl", [{**r, "seconds": seconds} for r in rows])
    result = compare_runs([str(base), str(defended)])
    row = find(result, "advbench", "safety_reminder (gated)")
    assert row["seconds_per_answer"] == pytest.approx(0.6) and row["latency_ratio"] == pytest.approx(1.2)
    assert "| 0.60 (1.20x) |" in compare_table(result)
    points = {(p["judge"], p["run"], p["benchmark"]): p for p in tradeoff_points(result)}
    point = points[("keyword", "safety_reminder (gated)", "advbench")]
    assert point["asr"] == pytest.approx(1 / 64) and point["over_refusal"] == pytest.approx(
        2 / 10
    )  # b8, b9 refused
    assert points[("keyword", "none", "advbench")]["over_refusal"] == 0.0


def test_runs_without_timing_show_no_latency(two_runs):
    result = compare_runs(list(two_runs))
    assert find(result, "advbench", "none")["seconds_per_answer"] is None
    assert find(result, "advbench", "none")["latency_ratio"] is None
