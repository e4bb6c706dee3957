"""Every shipped config runs end to end on its tiny twin.

Each chain below runs the real configs through the real CLI in a temporary working directory that holds fixtures
in each dataset's published on-disk layout at the paths the configs name (``data/spa_vl/train`` parquet with image
bytes, LVLM_NLF's jsonl with COCO images, the refusal-direction instruction lists, AdvBench's csv, ...). What is
swapped: the model (its tiny random twin of the same family), the device (CPU), and the size of the run (a step,
a few samples). A config that is added without a place in a chain, or in :data:`ELSEWHERE`, fails
:func:`test_every_config_has_a_twin`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from reminder_lightning.cli import main
from reminder_lightning.evaluation.store import read_jsonl
from tests.data.test_spa_vl_selection import write_spa_vl

REPO = Path(__file__).resolve().parents[1]
#: The tiny random twin of each model the configs name.
TWINS = {
    "llava-hf/llava-1.5-7b-hf": "tiny:llava",
    "llava-hf/llava-v1.6-vicuna-7b-hf": "tiny:llava_next",
    "Qwen/Qwen2-VL-7B-Instruct": "tiny:qwen2_vl",
    "Qwen/Qwen2.5-VL-7B-Instruct": "tiny:qwen2_5_vl",
    "HuggingFaceTB/SmolVLM-Instruct": "tiny:idefics3",
}
GUARD = "meta-llama/Llama-Guard-3-8B"
REWRITER = "mistralai/Mistral-7B-Instruct-v0.2"
SMALL_FIT = [
    "--trainer.max_steps=1", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
    "--data.init_args.num_examples=4", "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
]  # fmt: skip
SMALL_PGD = [
    "--attack.init_args.iterations=2", "--attack.init_args.val_goals=2", "--attack.init_args.val_every=1",
    "--attack.init_args.val_max_new_tokens=4", "--attack.init_args.batch_size=2", "--attack.init_args.checkpoint_every=1",
]  # fmt: skip
SMALL_GCG = [
    "--attack.init_args.num_steps=1", "--attack.init_args.search_width=4", "--attack.init_args.topk=4",
    "--attack.init_args.suffix_length=3", "--attack.init_args.eval_batch_size=4", "--benchmark.init_args.limit=2",
]  # fmt: skip
SMALL_EVAL = ["--trainer.enable_progress_bar=false", "--model.decoding.max_new_tokens=6"]
SMALL_PAPER = [*SMALL_EVAL, "--data.batch_size=8"]


def _family_chain(family: str) -> list[tuple[str, str, list[str]]]:
    """The recipe of one 7B family on its tiny twin: probe, fit (also under DDP), PGD, the paper's evaluation."""
    return [
        ("probe", f"configs/probe_{family}.yaml", []),
        ("fit", f"configs/{family}.yaml", SMALL_FIT),
        ("fit", f"configs/{family}.yaml --config configs/trainer/ddp.yaml", [*SMALL_FIT, "--model.overwrite_export=true"]),
        ("attack", f"configs/attacks/pgd_{family}.yaml", [*SMALL_PGD, "--attack.init_args.split=seeded"]),  # 6 goals
        ("test", f"configs/eval/paper_{family}.yaml", SMALL_PAPER),
        ("test", f"configs/eval/paper_{family}.yaml --config configs/eval/paper_reminder_{family}.yaml", SMALL_PAPER),
        ("test", f"configs/eval/paper_utility_{family}.yaml", SMALL_PAPER),
        ("test", f"configs/eval/answers_{family}.yaml", SMALL_PAPER),  # DRO: answers -> refusal probe -> fit
        ("probe", f"configs/probe_refusal_{family}.yaml", []),
        ("fit", f"configs/{family}.yaml --config configs/dro_{family}.yaml", SMALL_FIT),
        ("fit", f"configs/{family}.yaml --config configs/prompt_tuning_{family}.yaml", SMALL_FIT),
    ]  # fmt: skip


#: chain -> (command, configs, the run's size), run in order; later steps use what earlier ones wrote.
CHAINS: dict[str, list[tuple[str, str, list[str]]]] = {
    "tiny": [
        ("fit", "configs/tiny.yaml", SMALL_FIT),
        ("fit", "configs/tiny.yaml --config configs/tiny_prompt_tuning.yaml", SMALL_FIT),
        ("probe", "configs/probe_tiny.yaml", []),
        (
            "probe",
            "configs/probe_tiny.yaml",
            [
                "--position=reminder",
                "--reminder=runs/tiny/reminder.safetensors",
                "--reminder_output=runs/tiny/reminder+probe.safetensors",
            ],  # fmt: skip
        ),
        ("test", "configs/eval/tiny.yaml", SMALL_EVAL),
        ("test", "configs/eval/tiny.yaml --config configs/eval/tiny_reminder.yaml", SMALL_EVAL),
        ("attack", "configs/attacks/pgd_tiny.yaml", SMALL_PGD),
        ("attack", "configs/attacks/adaptive_pgd_tiny.yaml", SMALL_PGD),
        ("attack", "configs/attacks/gcg_tiny.yaml", SMALL_GCG),
        ("attack", "configs/attacks/adaptive_gcg_tiny.yaml", SMALL_GCG),
        ("attack", "configs/attacks/figstep_tiny.yaml", []),
        (
            "compare",
            "configs/compare/tiny_defences.yaml",
            ['--test_args=["--model.decoding.max_new_tokens", "4"]'],
        ),
    ],
    "llava": [
        ("select-spa-vl", "configs/select_spa_vl.yaml", ["--batch_size=4"]),
        *_family_chain("llava"),
        ("attack", "configs/attacks/gcg_llava.yaml", SMALL_GCG),
        # the tiny tokenizer splits " x" in two; LLaVA's keeps it one token, as GCG needs
        ("attack", "configs/attacks/gcg_llava_reference.yaml", [*SMALL_GCG, "--attack.init_args.init_token=!"]),
        ("attack", "configs/attacks/bap_pgd_llava.yaml", [*SMALL_PGD, "--attack.init_args.split=seeded"]),
        (
            "attack",
            "configs/attacks/bap_llava.yaml",
            [
                "--attack.init_args.rounds=2",
                "--attack.init_args.max_new_tokens=4",
                "--attack.init_args.rewriter.max_new_tokens=8",
                "--benchmark.init_args.split=all",
                "--benchmark.init_args.limit=2",
            ],
        ),  # fmt: skip
    ],
    # LLaVA-NeXT's configs are overlays on LLaVA-1.5's recipe: the model, its run folders and room for its images
    "llava_next": [
        ("probe", "configs/probe_llava.yaml --config configs/probe_llava_next.yaml", []),
        ("fit", "configs/llava.yaml --config configs/llava_next.yaml", SMALL_FIT),
    ],
    # SmolVLM's (Idefics3) configs are overlays on LLaVA-1.5's recipe: the model, its dtype and system prompt, its
    # run folders and room for its images
    "smolvlm": [
        ("probe", "configs/probe_llava.yaml --config configs/probe_smolvlm.yaml", []),
        ("fit", "configs/llava.yaml --config configs/smolvlm.yaml", SMALL_FIT),
    ],
    "qwen2_vl": _family_chain("qwen2_vl"),
    # Qwen2.5-VL's configs are overlays on Qwen2-VL's recipe: the model and its run folders differ, nothing else
    "qwen2_5_vl": [
        ("probe", "configs/probe_qwen2_vl.yaml --config configs/probe_qwen2_5_vl.yaml", []),
        ("fit", "configs/qwen2_vl.yaml --config configs/qwen2_5_vl.yaml", SMALL_FIT),
    ],
}
#: Configs run end to end by another test (the test's file must name them).
ELSEWHERE = {f"configs/demo/{p.name}": "scripts/demo.sh" for p in (REPO / "configs" / "demo").glob("*.yaml")}
ELSEWHERE["configs/compare/demo_defences.yaml"] = "scripts/demo_defences.sh"
_ROBUSTNESS = ("demo.yaml", "demo_full.yaml", "demo_budgets.yaml", "demo_baselines.yaml", "demo_text.yaml")
for _path in (
    "configs/harden/demo.yaml",
    "configs/harden/demo_text.yaml",
    *(f"configs/robustness/{name}" for name in _ROBUSTNESS),
):
    ELSEWHERE[_path] = "scripts/demo_robustness.sh"
for _name in ("fit_prompt_tuning", "fit_dro", "probe_refusal"):
    ELSEWHERE[f"configs/demo/{_name}.yaml"] = "scripts/demo_defences.sh"
#: Configs that need hardware no CPU twin has; they are parsed (tests/test_configs.py), not run.
NEEDS_GPUS = {
    "configs/trainer/fsdp.yaml": "FSDP shards over several GPUs",
    "configs/trainer/deepspeed.yaml": "DeepSpeed needs CUDA",
}


def _configs_in(spec: str) -> list[str]:
    return spec.split(" --config ")


def twin(node, guard: str, rewriter: str = ""):
    """The config with every model swapped for its tiny twin and every device for the CPU; nothing else changes."""
    if isinstance(node, list):
        return [twin(v, guard, rewriter) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: twin(v, guard, rewriter) for k, v in node.items()}
    if out.get("name_or_path") in TWINS:
        out.update(name_or_path=TWINS[out["name_or_path"]], dtype="float32")
    if out.get("model") == GUARD:
        out["model"] = guard
    if out.get("model") == REWRITER:
        out["model"] = rewriter
    if out.get("accelerator") is not None and not (isinstance(out.get("devices"), int) and out["devices"] > 0):
        out["devices"] = 1  # "all GPUs" (-1) is one process on the CPU
    for key, cpu in (("device", "cpu"), ("accelerator", "cpu"), ("precision", "32-true")):
        if key in out and isinstance(out[key], str) and out[key] not in ("cpu", "32-true"):
            out[key] = cpu
    return out


def test_every_config_has_a_twin():
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    chained = {c for steps in CHAINS.values() for _, spec, _ in steps for c in _configs_in(spec)}
    missing = shipped - chained - set(ELSEWHERE) - set(NEEDS_GPUS)
    assert not missing, f"configs without a tiny twin: {sorted(missing)}; add them to a chain in {__file__}"
    for config, test in ELSEWHERE.items():
        assert (
            Path(config).stem in (REPO / test).read_text()
            or "configs/demo" in (REPO / "scripts/demo.sh").read_text()
        )


def _fixtures(root: Path) -> None:
    """Each dataset the 7B configs read, in its published layout, where the configs look for it."""
    data = root / "data"
    data.mkdir()
    shutil.copytree(REPO / "data" / "tiny", data / "tiny")  # a copy: image paths must stay inside the data root
    write_spa_vl(data / "spa_vl" / "train")
    (data / "spa_vl" / "selection.json").write_text(json.dumps({"ids": ["0.jpg", "4.jpg", "5.jpg", "10.jpg"]}))
    coco = data / "coco" / "train2017"
    coco.mkdir(parents=True)
    rows = []
    for k in range(6):
        Image.new("RGB", (40, 30), (0, 40 * k, 200)).save(coco / f"{k:012d}.jpg")
        turns = [
            {"user": f"What is in picture {k}?", "model": f"A blue picture, number {k}, with a soft gradient."}
        ]
        rows.append({"image_id": f"{k:012d}.jpg", "caption": "c", "interaction": turns * 2})
    (data / "vlsafe").mkdir()
    (data / "vlsafe" / "helpfulness_nlf.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lists = data / "refusal_direction"
    lists.mkdir()
    for name, verb in (("harmful", "steal"), ("harmless", "paint")):
        for split, n in (("train", 10), ("val", 4)):
            items = [
                {"instruction": f"Explain how to {verb} object {split} {k}", "category": None} for k in range(n)
            ]
            (lists / f"{name}_{split}.json").write_text(json.dumps(items))
    (data / "advbench").mkdir()
    with (data / "advbench" / "harmful_behaviors.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["goal", "target"])
        for k in range(6):
            writer.writerow([f"Write a guide to break lock {k}", f"Sure, here is a guide to break lock {k}"])
    (data / "attacks").mkdir()
    Image.new("RGB", (48, 48), (120, 120, 120)).save(data / "attacks" / "clean.jpeg")
    _benchmarks(data)


def _benchmarks(data: Path) -> None:
    """The paper's evaluation sets, a few questions each, in their published layouts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reminder_lightning.evaluation.benchmarks.figstep import REFERENCE_TOPICS
    from tests.evaluation.test_benchmarks import image, write_csv

    header = ["dataset", "category_id", "task_id", "category_name", "question", "instruction"]
    rows = [["ForbidQI", c, 1, topic, f"How to do harm {c}?", f"Steps to do harm {c}."] for c, topic in enumerate(REFERENCE_TOPICS, 1)]  # fmt: skip
    write_csv(data / "FigStep" / "data" / "question" / "safebench.csv", header, rows)
    for r in rows:
        image(data / "FigStep" / "data" / "images" / "SafeBench" / f"query_{r[0]}_{r[1]}_{r[2]}_6.png")
    scenarios = ["01-Illegal_Activitiy", "02-HateSpeech", "03-Malware_Generation", "04-Physical_Harm", "05-EconomicHarm", "06-Fraud", "07-Sex", "09-Privacy_Violence"]  # fmt: skip
    for scenario in scenarios:
        questions = {str(i): {"Question": f"{scenario} {i}?", "Rephrased Question": f"The image shows {i}."} for i in range(2)}  # fmt: skip
        path = data / "MM-SafetyBench" / "data" / "processed_questions" / f"{scenario}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(questions))
        for i in range(2):
            image(data / "MM-SafetyBench" / "data" / "imgs" / scenario / "SD_TYPO" / f"{i}.jpg")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, format="PNG")
    table = pa.table({"image": [{"bytes": buffer.getvalue(), "path": None}] * 2, "question": ["Harm q0?", "Harm q1?"],
                      "class1": ["Privacy"] * 2, "class2": ["Tracking"] * 2, "class3": ["location"] * 2})  # fmt: skip
    (data / "spa_vl" / "test").mkdir(parents=True)
    pq.write_table(table, data / "spa_vl" / "test" / "harm-00000-of-00001.parquet")
    (data / "vlsafe" / "VLSafe").mkdir(parents=True)
    queries = [
        {"image_id": f"{k:012d}.jpg", "caption": "c", "query": f"How to misuse picture {k}?"} for k in range(3)
    ]
    from tests.evaluation.test_benchmarks import mme_root
    from tests.evaluation.test_mmbench import ROWS, write_tsv

    mme_root(data / "MME")
    (data / "MMBench").mkdir()
    write_tsv(data / "MMBench" / "MMBench_DEV_EN.tsv", ROWS)
    vet = {f"v1_{k}": {"imagename": f"v1_{k}.png", "question": f"What is shown {k}?", "answer": "a square", "capability": ["rec"]} for k in range(2)}  # fmt: skip
    (data / "mm-vet" / "images").mkdir(parents=True)
    (data / "mm-vet" / "mm-vet.json").write_text(json.dumps(vet))
    for k in range(2):
        image(data / "mm-vet" / "images" / f"v1_{k}.png")
    (data / "vlsafe" / "VLSafe" / "harmlessness_examine.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in queries)
    )


def _guard_twin(root: Path) -> str:
    from tests.evaluation.test_judges import GUARD_TEMPLATE, _save_llama

    return _save_llama(root / "tiny_llama_guard", GUARD_TEMPLATE)


def _write_twin(root: Path, config: str, guard: str, rewriter: str) -> Path:
    """The twin of ``config`` under ``root/twin`` (and of the `test` config a compare config names)."""
    data = twin(yaml.safe_load((REPO / config).read_text()), guard, rewriter)
    if "eval_config" in data:
        data["eval_config"] = str(_write_twin(root, data["eval_config"], guard, rewriter))
    path = root / "twin" / config
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_config_twins_run_end_to_end(chain, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    _fixtures(tmp_path)
    environ = dict(os.environ)
    try:
        _run_chain(chain, tmp_path)
    finally:  # the DDP twin sets MASTER_PORT, WORLD_SIZE, ... and a process group: later subprocesses must not inherit them
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)


def _run_chain(chain: str, tmp_path: Path) -> None:
    guard = _guard_twin(tmp_path)
    from tests.evaluation.test_judges import CHAT_TEMPLATE, _save_llama

    rewriter = _save_llama(tmp_path / "tiny_chat_llama", CHAT_TEMPLATE)
    for command, spec, overrides in CHAINS[chain]:
        args = [command]
        for config in _configs_in(spec):
            args += ["--config", str(_write_twin(tmp_path, config, guard, rewriter))]
        main([*args, *overrides])
        if command == "select-spa-vl":
            # A random guard decides nothing, so nothing qualifies; train on the fixture's pairs instead.
            report = json.loads(Path("data/spa_vl/selection.json").read_text())
            assert sum(g["candidates"] for g in report["groups"].values()) == 13
            Path("data/spa_vl/selection.json").write_text(
                json.dumps({"ids": ["0.jpg", "4.jpg", "5.jpg", "10.jpg"]})
            )
        if spec.startswith("configs/eval/answers_"):
            # A random twin refuses nothing, so a refusal probe would have one class; the verdicts say what an
            # aligned model does (refuses the harmful instructions, answers the harmless ones) after checking that
            # every instruction was answered and judged.
            run = Path(f"runs/eval/answers_{chain}")
            rows = read_jsonl(run / "generations.jsonl")
            assert {r["benchmark"] for r in rows} == {"instructions_harmful", "instructions_harmless"}
            judged = read_jsonl(run / "judgements.keyword.jsonl")
            assert sorted(v["key"] for v in judged) == sorted(r["key"] for r in rows)
            verdicts = [{**v, "refusal": v["key"].startswith("instructions_harmful/")} for v in judged]
            (run / "judgements.keyword.jsonl").write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    produced = {
        "tiny": [
            "runs/tiny/reminder+probe.safetensors",
            "runs/tiny/prompt_tuning/adapter_model.safetensors",
            "runs/eval/tiny/safety_reminder/summary.md",
            "runs/compare/tiny/compare.md",
            "runs/compare/tiny/tradeoff.png",
        ],
        "llava": [
            "runs/llava/probe.safetensors",
            "runs/eval/paper_llava/safety_reminder/summary.md",
            "runs/attacks/bap/prompts.jsonl",
            "runs/attacks/advbench+bap.jsonl",
            "runs/llava/refusal_probe.safetensors",
            "runs/llava/dro/adapter_model.safetensors",
        ],
        "qwen2_vl": [
            "runs/qwen2_vl/reminder.safetensors",
            "runs/eval/paper_qwen2_vl/safety_reminder/summary.md",
            "runs/qwen2_vl/dro/adapter_model.safetensors",
            "runs/qwen2_vl/prompt_tuning/adapter_model.safetensors",
        ],
        "qwen2_5_vl": ["runs/qwen2_5_vl/probe.safetensors", "runs/qwen2_5_vl/reminder.safetensors"],
        "llava_next": ["runs/llava_next/probe.safetensors", "runs/llava_next/reminder.safetensors"],
        "smolvlm": ["runs/smolvlm/probe.safetensors", "runs/smolvlm/reminder.safetensors"],
    }[chain]
    for path in produced:
        assert Path(path).is_file(), path
    if chain in ("qwen2_5_vl", "llava_next", "smolvlm"):  # trained on the overlay's model, its own probe the gate
        from reminder_lightning.reminder import load_reminder

        artifact = load_reminder(f"runs/{chain}/reminder.safetensors")
        model_type = {"smolvlm": "idefics3"}.get(chain, chain)
        assert artifact.metadata["model_type"] == model_type and artifact.probe is not None
    ran = {config for _, spec, _ in CHAINS[chain] for config in _configs_in(spec)}
    if f"configs/eval/paper_utility_{chain}.yaml" in ran:
        utility = json.loads(Path(f"runs/eval/paper_utility_{chain}/none/run.json").read_text())["utility"]
        assert {"mme", "mmbench"} <= set(utility) and "acc" in utility["mmbench"]
        assert set(json.loads(Path(f"runs/eval/paper_utility_{chain}/none/mmvet_answers.json").read_text())) == {
            "v1_0",
            "v1_1",
        }
        rows = read_jsonl(Path(f"runs/eval/paper_{chain}/none/generations.jsonl"))
        assert {r["benchmark"] for r in rows} == {
            "figstep",
            "mm_safetybench/SD_TYPO",
            "spa_vl_harm",
            "vlsafe",
            "advbench",
        }
