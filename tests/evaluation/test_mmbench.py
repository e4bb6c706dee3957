"""MMBench in its published TSV (base64 images): prompts, the rotated copies, CircularEval on known answers."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import pytest
from PIL import Image

from reminder_lightning.evaluation.benchmarks.mmbench import LLAVA_SUFFIX, MMBench, parse_choice

HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image"]


def _b64(color) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_tsv(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


ROWS = [
    [0, "What colour is the square?", "", "red", "blue", "green", "", "A", "attribute", _b64((255, 0, 0))],
    [1, "How many squares?", "Count carefully.", "one", "two", "", "", "A", "counting", _b64((0, 0, 255))],
]


def test_circular_copies_rotate_options_and_move_the_answer(tmp_path):
    samples = MMBench(str(write_tsv(tmp_path / "MMBench_DEV_EN.tsv", ROWS))).load()
    assert [s.id for s in samples] == ["0/0", "0/1", "0/2", "1/0", "1/1"]  # 3 options -> 3 copies, 2 -> 2
    assert [s.reference for s in samples[:3]] == ["A", "C", "B"]  # "red" moves A -> C -> B
    assert [s.meta["options"][s.reference] for s in samples] == ["red", "red", "red", "one", "one"]
    assert samples[0].prompt == f"What colour is the square?\nA. red\nB. blue\nC. green\n{LLAVA_SUFFIX}"
    assert samples[3].prompt.startswith("Hint: Count carefully.\nHow many squares?\nA. one\nB. two")
    assert Image.open(io.BytesIO(samples[0].image)).getpixel((0, 0)) == (255, 0, 0)
    assert not samples[0].harmful and samples[0].category == "attribute"


def test_circular_eval_needs_every_copy_right(tmp_path):
    bench = MMBench(str(write_tsv(tmp_path / "mmb.tsv", ROWS)))
    samples = bench.load()
    # question 0: right in copies 0 and 1, wrong in copy 2; question 1: right in both copies ("one" by its text).
    answers = ["A", "(C) red", "A", "A. one", "The answer is one."]
    metrics = bench.utility_metrics(samples, answers)
    assert metrics["acc"] == 50.0 and metrics["vanilla_acc"] == 100.0
    assert metrics["attribute/acc"] == 0.0 and metrics["counting/acc"] == 100.0 and metrics["unparsed"] == 0.0
    assert bench.utility_metrics(samples, ["B", "B", "B", "I am not sure.", "B"])["unparsed"] == 20.0


def test_published_circular_copies_are_grouped_not_made_again(tmp_path):
    copies = [
        ROWS[1],
        [1_000_001, "How many squares?", "", "two", "one", "", "", "B", "counting", _b64((0, 0, 9))],
    ]
    bench = MMBench(str(write_tsv(tmp_path / "mmb.tsv", copies)))
    samples = bench.load()
    assert [s.id for s in samples] == ["1/0", "1/1"] and [s.reference for s in samples] == ["A", "B"]
    assert bench.utility_metrics(samples, ["A", "A"])["acc"] == 0.0
    assert bench.utility_metrics(samples, ["A", "B"])["acc"] == 100.0


def test_parse_choice_and_bad_rows(tmp_path):
    options = {"A": "red", "B": "blue"}
    assert [parse_choice(t, options) for t in ("B", " (A) red", "Answer: b", "It is blue.", "red or blue", "")] == [
        "B", "A", "B", "B", None, None,
    ]  # fmt: skip
    assert parse_choice("Apples are red.", options) == "A"  # no leading letter: the option text decides
    bad = write_tsv(tmp_path / "bad.tsv", [[0, "q", "", "red", "blue", "", "", "C", "x", _b64((1, 1, 1))]])
    with pytest.raises(ValueError, match=r"bad.tsv row 1: needs at least two options and an answer among them"):
        MMBench(str(bad)).load()
    broken = write_tsv(tmp_path / "img.tsv", [[0, "q", "", "red", "blue", "", "", "A", "x", "not base64!"]])
    with pytest.raises(ValueError, match=r"img.tsv row 1: field 'image' is not base64"):
        MMBench(str(broken)).load()
    assert len(MMBench(str(write_tsv(tmp_path / "one.tsv", ROWS)), circular=False).load()) == 2
