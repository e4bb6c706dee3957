"""The bad-input corpus: hostile or broken data, configs, artifacts, results folders and paths.

Every case either fails with a clear error (the exception type, and the message naming what is wrong: the file,
record, field and the fix) or is handled correctly (a behaviour check). None may pass silently. New loaders and
commands are checked by adding their cases here. Run it alone with ``pytest tests/test_bad_inputs.py``.

Counts (also in the README's reliability section) come from :data:`CASES`: ``error`` cases and ``handled`` cases.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reminder_lightning.data.datamodule import HarmfulBenignDataModule, check_images
from reminder_lightning.data.readers import FieldMap
from reminder_lightning.data.records import Record, RecordError, decode_image, load_image
from reminder_lightning.data.sources import HubRecords, LocalRecords
from reminder_lightning.defences.safety_reminder import SafetyReminderDefence
from reminder_lightning.evaluation.benchmarks.generic import GenericBenchmark
from reminder_lightning.evaluation.store import JsonlAppender, check_same_run, done_keys
from reminder_lightning.reminder.artifact import HASH_KEY, content_hash, load_probe, load_reminder, save_reminder
from reminder_lightning.reminder.detector import SafetyProbe
from reminder_lightning.reminder.generation import ReminderGenerationConfig
from reminder_lightning.reminder.generation.steps import gate
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.training.module import SafetyReminderModule
from reminder_lightning.vlm.adapter import VLMSpec, resolve_model_path
from tests.training.helpers import REPO

H = 8  # hidden width of the hand-made artifacts
IMAGE = REPO / "data/tiny/images/harmful_00.png"
HARMFUL_ROW = {"id": "h1", "question": "How?", "safe_answer": "I can't help.", "harmful_answer": "Sure: step 1."}
BENIGN_ROW = {"id": "b1", "question": "Why is the sky blue?", "safe_answer": "Rayleigh scattering."}


@dataclass
class Case:
    id: str
    area: str  # data | benchmark | artifact | config | results | path | gate
    run: Callable[[Path], object]  # acts on a fresh tmp folder
    error: type[BaseException] | None = None  # expected exception (None: handled, `check` asserts the behaviour)
    match: tuple[str, ...] = ()  # every fragment must be in the message
    check: Callable[[object, Path], None] | None = None


# ---------------------------------------------------------------------------------------------- helpers


def jsonl(path: Path, *rows: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def local(tmp: Path, kind: str, *rows: dict, name: str = "data.jsonl", **kwargs) -> list[Record]:
    return LocalRecords(str(jsonl(tmp / name, *rows)), kind, **kwargs).load()


def generic(tmp: Path, *rows: dict, **kwargs):
    return GenericBenchmark(str(jsonl(tmp / "bench.jsonl", *rows)), name="b", **kwargs).load_all()


def artifact(tmp: Path, soft=None, probe=None, **metadata) -> Path:
    soft = torch.randn(4, H) if soft is None else soft
    meta = {"interval": 16, "threshold": 0.2, **metadata}
    return save_reminder(tmp / "r.safetensors", soft, probe, meta)


def probe(width: int = H, components: int = 2) -> SafetyProbe:
    p = SafetyProbe(width, components)
    with torch.no_grad():
        p.components.copy_(torch.randn(components, width))
        p.coef.copy_(torch.randn(components))
    return p


def rewrite(path: Path, tensors: dict | None = None, metadata: dict | None = None, rehash: bool = True) -> Path:
    """Write a file as a hostile (or careless) editor would: new tensors/metadata, hash recomputed or not."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        old_t = {k: f.get_tensor(k) for k in list(f.keys())}
        old_m = dict(f.metadata())
    t, m = {**old_t, **(tensors or {})}, {**old_m, **(metadata or {})}
    if rehash:
        m[HASH_KEY] = content_hash(t, m)
    save_file(t, str(path), metadata=m)
    return path


def flip_last_byte(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def png16(path: Path) -> Path:
    Image.fromarray(np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)).save(path)
    return path


def text(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


def raw(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def rows_written(tmp: Path, defence: dict, decoding: dict) -> Path:
    with JsonlAppender(tmp / "generations.rank0.jsonl") as writer:
        writer.write({"key": "b/1", "text": "answer", "defence": defence, "decoding": decoding})
    return tmp


def datamodule(tmp: Path, **kwargs) -> HarmfulBenignDataModule:
    h = LocalRecords(str(jsonl(tmp / "h.jsonl", HARMFUL_ROW)), "harmful")
    b = LocalRecords(str(jsonl(tmp / "b.jsonl", BENIGN_ROW)), "benign")
    return HarmfulBenignDataModule(h, b, vlm=VLMSpec("tiny:llava"), **kwargs)


def symlink_out(tmp: Path) -> list[Record]:
    (tmp / "img").mkdir()
    os.symlink("/etc/hostname" if Path("/etc/hostname").exists() else "/etc/passwd", tmp / "img" / "x.png")
    return local(tmp, "benign", {**BENIGN_ROW, "image": "img/x.png"})


def legacy_artifact(tmp: Path) -> Path:
    path = artifact(tmp)
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        t, m = {k: f.get_tensor(k) for k in list(f.keys())}, dict(f.metadata())
    m["format_version"] = "1"
    m.pop(HASH_KEY)
    save_file(t, str(path), metadata=m)
    return path


# ---------------------------------------------------------------------------------------------- the corpus

CASES = [
    # --- training data (LocalRecords / HubRecords) ---
    Case(
        "data-missing-file",
        "data",
        lambda t: LocalRecords(str(t / "no.jsonl"), "benign").load(),
        FileNotFoundError,
        ("no.jsonl", "Fix"),
    ),
    Case(
        "data-unsupported-suffix",
        "data",
        lambda t: LocalRecords(str(t / "d.txt"), "benign"),
        ValueError,
        (".txt",),
    ),
    Case(
        "data-invalid-json",
        "data",
        lambda t: LocalRecords(str(text(t / "d.json", "[{")), "benign").load(),
        RecordError,
        ("d.json", "not valid JSON", "Fix"),
    ),
    Case(
        "data-json-not-a-list",
        "data",
        lambda t: LocalRecords(str(text(t / "d.json", '{"rows": 1}')), "benign").load(),
        RecordError,
        ("d.json", "expected a list of objects"),
    ),
    Case(
        "data-jsonl-broken-line",
        "data",
        lambda t: LocalRecords(str(text(t / "d.jsonl", json.dumps(BENIGN_ROW) + "\n{oops\n")), "benign").load(),
        RecordError,
        ("d.jsonl line 2", "not valid JSON"),
    ),
    Case(
        "data-not-utf8-jsonl",
        "data",
        lambda t: LocalRecords(
            str(raw(t / "d.jsonl", '{"question": "caf\u00e9"}\n'.encode("latin-1"))), "benign"
        ).load(),
        RecordError,
        ("d.jsonl", "not UTF-8", "Fix"),
    ),
    Case(
        "data-not-utf8-csv",
        "data",
        lambda t: LocalRecords(
            str(raw(t / "d.csv", "question,safe_answer\ncaf\u00e9,ok\n".encode("utf-16"))), "benign"
        ).load(),
        RecordError,
        ("d.csv", "not UTF-8"),
    ),
    Case(
        "data-missing-question",
        "data",
        lambda t: local(t, "benign", {"id": "x", "safe_answer": "a"}),
        RecordError,
        ("record 'x'", "question", "Fix"),
    ),
    Case(
        "data-empty-question",
        "data",
        lambda t: local(t, "benign", {**BENIGN_ROW, "question": "  "}),
        RecordError,
        ("record 'b1'", "question", "empty"),
    ),
    Case(
        "data-question-not-text",
        "data",
        lambda t: local(t, "benign", {**BENIGN_ROW, "question": 42}),
        RecordError,
        ("record 'b1'", "question", "int", "expected text"),
    ),
    Case(
        "data-harmful-without-harmful-answer",
        "data",
        lambda t: local(t, "harmful", {**HARMFUL_ROW, "harmful_answer": ""}),
        RecordError,
        ("record 'h1'", "harmful_answer", "kind=harmful"),
    ),
    Case(
        "data-harmful-row-under-benign-source",
        "data",
        lambda t: local(t, "benign", HARMFUL_ROW),
        RecordError,
        ("record 'h1'", "this row is harmful", "kind: harmful"),
    ),
    Case(
        "data-benign-row-labelled-unsafe",
        "data",
        lambda t: local(t, "benign", {**BENIGN_ROW, "label": "unsafe"}),
        RecordError,
        ("record 'b1'", "'label'", "kind: benign"),
    ),
    Case(
        "data-benign-row-is-safe-false",
        "data",
        lambda t: local(t, "benign", {**BENIGN_ROW, "is_safe": False}),
        RecordError,
        ("record 'b1'", "'is_safe'"),
    ),
    Case(
        "data-null-required-field-mapping",
        "data",
        lambda t: LocalRecords(str(t / "d.jsonl"), "harmful", fields=FieldMap(harmful_answer=None)),
        ValueError,
        ("fields.harmful_answer is null",),
    ),
    Case(
        "data-bad-kind",
        "data",
        lambda t: LocalRecords(str(t / "d.jsonl"), "toxic"),
        ValueError,
        ("kind must be 'harmful' or 'benign'",),
    ),
    Case(
        "data-limit-zero",
        "data",
        lambda t: LocalRecords(str(t / "d.jsonl"), "benign", limit=0),
        ValueError,
        ("limit",),
    ),
    Case(
        "data-image-struct-empty",
        "data",
        lambda t: local(t, "benign", {**BENIGN_ROW, "image": {"bytes": None, "path": None}}),
        RecordError,
        ("record 'b1'", "image struct"),
    ),
    Case(
        "data-image-not-a-path",
        "data",
        lambda t: local(t, "benign", {**BENIGN_ROW, "image": 7}),
        RecordError,
        ("record 'b1'", "field 'image'", "int"),
    ),
    Case(
        "data-relative-image-without-root",
        "data",
        lambda t: HubRecords(
            "json",
            "benign",
            data_files=[
                str(jsonl(t / "a.jsonl", {**BENIGN_ROW, "image": "x.png"})),
                str(jsonl(t / "b.jsonl", BENIGN_ROW)),
            ],
        ).load(),  # fmt: skip
        RecordError,
        ("relative path 'x.png'", "image_root"),
    ),
    Case(
        "data-missing-image-checked-before-training",
        "data",
        lambda t: check_images(local(t, "benign", {**BENIGN_ROW, "image": "gone.png"})),
        RecordError,
        ("record 'b1'", "image file not found", "gone.png"),
    ),
    Case(
        "data-corrupt-image",
        "data",
        lambda t: (
            raw(t / "bad.png", b"\x89PNG not really")
            and check_images(local(t, "benign", {**BENIGN_ROW, "image": "bad.png"}))
        ),
        RecordError,
        ("record 'b1'", "cannot decode", "bad.png"),
    ),
    Case(
        "data-16-bit-png-is-scaled-not-clipped",
        "data",
        lambda t: load_image(local(t, "benign", {**BENIGN_ROW, "image": png16(t / "g.png").name})[0]),
        check=lambda img, t: (
            (img.mode == "RGB" and 100 < np.asarray(img).mean() < 155)
            or pytest.fail(f"16-bit PNG decoded to mean {np.asarray(img).mean():.1f} (clipped)")
        ),
    ),
    # --- paths ---
    Case(
        "path-relative-escape",
        "path",
        lambda t: local(t, "benign", {**BENIGN_ROW, "image": "../../../../../../etc/passwd"}),
        RecordError,
        ("record 'b1'", "outside the data root", "image_root", "allow_outside_root"),
    ),
    Case(
        "path-absolute-outside",
        "path",
        lambda t: local(t, "benign", {**BENIGN_ROW, "image": "/etc/passwd"}),
        RecordError,
        ("/etc/passwd", "outside the data root"),
    ),
    Case("path-symlink-out-of-root", "path", symlink_out, RecordError, ("outside the data root",)),
    Case(
        "path-struct-path-escape",
        "path",
        lambda t: local(t, "benign", {**BENIGN_ROW, "image": {"bytes": None, "path": "/etc/passwd"}}),
        RecordError,
        ("outside the data root",),
    ),
    Case(
        "path-benchmark-escape",
        "path",
        lambda t: generic(t, {"id": "1", "question": "q", "image": "/etc/passwd"}),
        RecordError,
        ("bench.jsonl", "outside the data root"),
    ),
    Case(
        "path-opt-out-is-honoured",
        "path",
        lambda t: local(t, "benign", {**BENIGN_ROW, "image": str(IMAGE)}, allow_outside_root=True),
        check=lambda recs, t: recs[0].image == str(IMAGE) or pytest.fail(recs[0].image),
    ),
    Case(
        "path-inside-root-is-accepted",
        "path",
        lambda t: (shutil.copy(IMAGE, t / "in.png"), local(t, "benign", {**BENIGN_ROW, "image": "in.png"}))[1],
        check=lambda recs, t: load_image(recs[0]).size[0] > 0 or pytest.fail("not loaded"),
    ),
    # --- evaluation benchmarks ---
    Case(
        "bench-question-is-a-list",
        "benchmark",
        lambda t: generic(t, {"id": "1", "question": ["a", "b"]}),
        ValueError,
        ("bench.jsonl row 0", "question", "list", "expected text"),
    ),
    Case(
        "bench-question-is-an-int",
        "benchmark",
        lambda t: generic(t, {"id": "1", "question": 3}),
        ValueError,
        ("question", "int"),
    ),
    Case(
        "bench-missing-question-column",
        "benchmark",
        lambda t: generic(t, {"id": "1", "prompt": "q"}),
        ValueError,
        ("question",),
    ),
    Case(
        "bench-duplicate-ids",
        "benchmark",
        lambda t: GenericBenchmark(
            str(jsonl(t / "bench.jsonl", {"id": "1", "question": "a"}, {"id": "1", "question": "b"})), name="b"
        ).load(),  # fmt: skip
        ValueError,
        ("duplicate sample id '1'",),
    ),
    Case(
        "bench-empty-file",
        "benchmark",
        lambda t: GenericBenchmark(str(text(t / "bench.jsonl", "")), name="b").load(),
        ValueError,
        ("no samples found",),
    ),
    Case(
        "bench-missing-file",
        "benchmark",
        lambda t: GenericBenchmark(str(t / "none.jsonl"), name="b").load(),
        FileNotFoundError,
        ("none.jsonl",),
    ),
    Case(
        "bench-empty-name",
        "benchmark",
        lambda t: GenericBenchmark(str(t / "x.jsonl"), name=" "),
        ValueError,
        ("name is empty",),
    ),
    # --- reminder artifacts ---
    Case(
        "artifact-missing",
        "artifact",
        lambda t: load_reminder(t / "none.safetensors"),
        FileNotFoundError,
        ("none.safetensors", "fit"),
    ),
    Case(
        "artifact-pickle-payload",
        "artifact",
        lambda t: (
            torch.save({"soft_prompt": torch.zeros(2, 2)}, t / "r.safetensors")
            or load_reminder(t / "r.safetensors")
        ),
        ValueError,
        ("r.safetensors", "not a readable safetensors file", "pickled"),
    ),
    Case(
        "artifact-truncated",
        "artifact",
        lambda t: load_reminder(raw(t / "cut.safetensors", artifact(t).read_bytes()[:40])),
        ValueError,
        ("not a readable safetensors file",),
    ),
    Case(
        "artifact-not-a-reminder",
        "artifact",
        lambda t: load_reminder(rewrite_plain(t, {"weights": torch.zeros(2)})),
        ValueError,
        ("no 'soft_prompt' tensor",),
    ),
    Case(
        "artifact-nan-soft-prompt",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), {"soft_prompt": torch.full((4, H), float("nan"))})),
        ValueError,
        ("'soft_prompt'", "non-finite", "Fix"),
    ),
    Case(
        "artifact-inf-probe",
        "artifact",
        lambda t: load_reminder(
            rewrite(artifact(t, probe=probe()), {"probe.coef": torch.tensor([1.0, float("inf")])})
        ),
        ValueError,
        ("'probe.coef'", "non-finite", "never flag"),
    ),
    Case(
        "artifact-nan-threshold",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"threshold": "nan"})),
        ValueError,
        ("r.safetensors", "threshold", "[0, 1]"),
    ),
    Case(
        "artifact-threshold-above-one",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"threshold": "1.5"})),
        ValueError,
        ("threshold", "[0, 1]"),
    ),
    Case(
        "artifact-interval-zero",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"interval": "0"})),
        ValueError,
        ("interval", ">= 1"),
    ),
    Case(
        "artifact-interval-not-a-number",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"interval": "often"})),
        ValueError,
        ("'interval' must be int", "often"),
    ),
    Case(
        "artifact-bad-mode",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"mode": "sometimes"})),
        ValueError,
        ("mode", "sometimes"),
    ),
    Case(
        "artifact-bad-flag-string",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"keep_checking_after_flag": "yes"})),
        ValueError,
        ("keep_checking_after_flag",),
    ),
    Case(
        "artifact-flipped-bytes",
        "artifact",
        lambda t: load_reminder(flip_last_byte(artifact(t))),
        ValueError,
        ("content hash mismatch", "re-export"),
    ),
    Case(
        "artifact-threshold-edited-by-hand",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"threshold": "0.9"}, rehash=False)),
        ValueError,
        ("content hash mismatch",),
    ),
    Case(
        "artifact-hash-removed",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={HASH_KEY: ""}, rehash=False)),
        ValueError,
        ("content hash mismatch",),
    ),
    Case(
        "artifact-unknown-format-version",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"format_version": "99"})),
        ValueError,
        ("format_version", "'99'"),
    ),
    Case(
        "artifact-probe-width-mismatch",
        "artifact",
        lambda t: load_reminder(
            rewrite(
                artifact(t, probe=probe()),
                {"probe.mean": torch.zeros(H + 1), "probe.components": torch.zeros(2, H + 1)},
            )
        ),  # fmt: skip
        ValueError,
        ("'probe.components'", "another model"),
    ),
    Case(
        "artifact-probe-incomplete",
        "artifact",
        lambda t: load_reminder(
            rewrite_plain(t, {"soft_prompt": torch.zeros(4, H), "probe.mean": torch.zeros(H)})
        ),
        ValueError,
        ("no complete probe",),
    ),
    Case(
        "artifact-soft-prompt-1d",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), {"soft_prompt": torch.zeros(H)})),
        ValueError,
        ("'soft_prompt' has shape",),
    ),
    Case(
        "artifact-metadata-shape-disagrees",
        "artifact",
        lambda t: load_reminder(rewrite(artifact(t), metadata={"num_tokens": "9"})),
        ValueError,
        ("'num_tokens'", "9"),
    ),
    Case(
        "artifact-nan-is-never-written",
        "artifact",
        lambda t: artifact(t, soft=torch.full((4, H), float("nan"))),
        ValueError,
        ("non-finite",),
    ),
    Case(
        "artifact-probe-file-nan",
        "artifact",
        lambda t: load_probe(
            rewrite_plain(
                t,
                {
                    **{f"probe.{k}": v for k, v in probe().state_dict().items()},
                    "probe.mean": torch.full((H,), float("nan")),
                },
            )
        ),  # fmt: skip
        ValueError,
        ("'probe.mean'", "non-finite"),
    ),
    Case(
        "artifact-legacy-format-1-still-loads",
        "artifact",
        lambda t: load_reminder(legacy_artifact(t)),
        check=lambda art, t: art.threshold == 0.2 or pytest.fail("legacy artifact misread"),
    ),
    # --- configuration ---
    Case(
        "config-defence-threshold-above-one",
        "config",
        lambda t: SafetyReminderDefence(str(artifact(t)), threshold=1.5).load(),
        ValueError,
        ("threshold", "[0, 1]"),
    ),
    Case(
        "config-defence-threshold-negative",
        "config",
        lambda t: SafetyReminderDefence(str(artifact(t)), threshold=-1.0).load(),
        ValueError,
        ("threshold",),
    ),
    Case(
        "config-defence-interval-zero",
        "config",
        lambda t: SafetyReminderDefence(str(artifact(t)), interval=0).load(),
        ValueError,
        ("interval",),
    ),
    Case(
        "config-num-examples-zero",
        "config",
        lambda t: datamodule(t, num_examples=0),
        ValueError,
        ("num_examples must be >= 1",),
    ),
    Case(
        "config-harmful-fraction",
        "config",
        lambda t: datamodule(t, harmful_fraction=1.5),
        ValueError,
        ("harmful_fraction",),
    ),
    Case(
        "config-val-fraction-one",
        "config",
        lambda t: datamodule(t, val_fraction=1.0),
        ValueError,
        ("val_fraction",),
    ),
    Case("config-batch-size-zero", "config", lambda t: datamodule(t, batch_size=0), ValueError, ("batch_size",)),
    Case(
        "config-num-tokens-zero",
        "config",
        lambda t: SafetyReminderModule(VLMSpec("tiny:llava"), num_tokens=0),
        ValueError,
        ("num_tokens",),
    ),
    Case(
        "config-negative-cls-weight",
        "config",
        lambda t: SafetyReminderModule(VLMSpec("tiny:llava"), cls_weight=-1.0),
        ValueError,
        ("cls_weight",),
    ),
    Case(
        "config-schedule-nan-threshold",
        "config",
        lambda t: ReminderSchedule(threshold=float("nan")),
        ValueError,
        ("threshold",),
    ),
    Case(
        "config-zero-new-tokens",
        "config",
        lambda t: ReminderGenerationConfig(max_new_tokens=0),
        ValueError,
        ("max_new_tokens",),
    ),
    Case(
        "config-bad-return-text",
        "config",
        lambda t: ReminderGenerationConfig(return_text="some"),
        ValueError,
        ("return_text",),
    ),
    Case(
        "config-unknown-generation-setting",
        "config",
        lambda t: ReminderGenerationConfig().updated(treshold=0.3),
        TypeError,
        ("treshold",),
    ),
    Case(
        "config-missing-local-model",
        "config",
        lambda t: resolve_model_path(str(t / "models" / "llava")),
        FileNotFoundError,
        ("no model folder", "models/llava", "Fix"),
    ),
    # --- results folders ---
    Case(
        "results-other-defence",
        "results",
        lambda t: check_same_run(
            rows_written(t, {"name": "none"}, {"max_new_tokens": 8}),
            {"name": "safety_reminder"},
            {"max_new_tokens": 8},
        ),  # fmt: skip
        ValueError,
        ("generations.rank0.jsonl", "record 'b/1'", "another defence", "output_dir"),
    ),
    Case(
        "results-other-decoding",
        "results",
        lambda t: check_same_run(
            rows_written(t, {"name": "none"}, {"max_new_tokens": 8}), {"name": "none"}, {"max_new_tokens": 16}
        ),  # fmt: skip
        ValueError,
        ("another decoding", "max_new_tokens"),
    ),
    Case(
        "results-other-artifact-hash",
        "results",
        lambda t: check_same_run(
            rows_written(t, {"name": "r", "artifact_sha256": "a"}, {}), {"name": "r", "artifact_sha256": "b"}, {}
        ),  # fmt: skip
        ValueError,
        ("artifact_sha256",),
    ),
    Case(
        "results-torn-last-line-is-redone",
        "results",
        lambda t: done_keys(torn(rows_written(t, {}, {}))),
        check=lambda keys, t: keys == {"b/1"} or pytest.fail(keys),
    ),
    # --- the gate ---
    Case(
        "gate-nan-score-raises",
        "gate",
        lambda t: gate(torch.tensor([True, True]), torch.tensor([0.9, float("nan")]), ReminderSchedule()),
        RuntimeError,
        ("non-finite P(safe)", "Refusing to decide"),
    ),
    Case(
        "gate-image-bytes-garbage",
        "gate",
        lambda t: decode_image(b"not an image", "src", "r1"),
        RecordError,
        ("src: record 'r1'", "cannot decode"),
    ),
]


def rewrite_plain(tmp: Path, tensors: dict) -> Path:
    """A well-formed (hashed) safetensors file holding only ``tensors``."""
    from safetensors.torch import save_file

    path = tmp / "plain.safetensors"
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    metadata = {"format_version": "2"}
    metadata[HASH_KEY] = content_hash(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)
    return path


def torn(folder: Path) -> Path:
    with (folder / "generations.rank0.jsonl").open("a") as f:
        f.write('{"key": "b/2", "te')  # a killed run's half-written line
    return folder


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory is a data root too: keep it away from the repo
    work = tmp_path / "work"
    work.mkdir()
    if case.error is None:
        result = case.run(work)
        assert case.check is not None, "a handled case must check its behaviour"
        case.check(result, work)
        return
    with pytest.raises(case.error) as err:
        case.run(work)
    message = str(err.value)
    missing = [m for m in case.match if m not in message]
    assert not missing, f"message lacks {missing}: {message}"


def test_corpus_size_and_kinds():
    """The README's reliability section reports these counts."""
    errors = sum(c.error is not None for c in CASES)
    handled = len(CASES) - errors
    assert len(CASES) >= 50 and len({c.id for c in CASES}) == len(CASES)
    assert {c.area for c in CASES} >= {"data", "path", "benchmark", "artifact", "config", "results", "gate"}
    assert errors > 0 and handled > 0


def test_16_bit_png_bytes_keep_their_contrast():
    buffer = io.BytesIO()
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(buffer, format="PNG")
    pixels = np.asarray(decode_image(buffer.getvalue(), "s", "r"))
    assert pixels[0, 0, 0] == 0 and pixels[0, 1, 0] == 255
