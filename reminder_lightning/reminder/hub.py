"""A trained reminder as a Hugging Face Hub model repository: one folder, shared the way adapters are.

    reminder.save_pretrained("my-reminder", results="runs/eval/compare.json")  # reminder.safetensors + README.md
    reminder.push_to_hub("org/llava-safety-reminder", results="runs/eval/compare.json")
    SafetyReminder.from_pretrained("org/llava-safety-reminder", revision="v1")  # hub cache; offline once cached

The folder holds ``reminder.safetensors`` (the artifact, validated in full on every load) and ``README.md``: a model
card generated from the artifact's own metadata (base model, method, schedule, gate calibration) and, when given,
the measured results of a ``compare`` run with their judge and n. Nothing is downloaded unless a repo id is given;
a repo id goes through ``huggingface_hub``'s cache, so ``local_files_only=True`` (or ``HF_HUB_OFFLINE=1``) loads a
cached revision without the network.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

ARTIFACT_FILE = "reminder.safetensors"
CARD_FILE = "README.md"
PAPER = "https://arxiv.org/abs/2506.15734"


def resolve_artifact(
    path_or_repo_id: str | Path,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """The local ``reminder.safetensors`` for a file, a folder that holds one, or a hub repo id (downloaded into,
    or read from, the hub cache)."""
    local = Path(path_or_repo_id)
    if local.is_file():
        return local
    if local.is_dir():
        found = local / ARTIFACT_FILE
        if not found.is_file():
            raise FileNotFoundError(
                f"{local} holds no {ARTIFACT_FILE}. Fix: point at the folder `save_pretrained` wrote, or at the "
                "artifact file itself."
            )
        return found
    name = str(path_or_repo_id)
    if name.endswith(".safetensors") or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(
            f"No reminder artifact at {name}: it is neither a local file or folder nor a hub repo id ('org/name')."
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                name,
                ARTIFACT_FILE,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
            )  # fmt: skip
        )
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"{name}@{revision or 'main'}: {ARTIFACT_FILE} is not in the hub cache"
            f"{f' ({cache_dir})' if cache_dir else ''} and the hub could not be asked (offline or "
            "local_files_only). Fix: download it once with network access, or give the local folder."
        ) from err
    except EntryNotFoundError as err:
        raise FileNotFoundError(
            f"{name}@{revision or 'main'} has no {ARTIFACT_FILE}: it is not a repository `push_to_hub` wrote."
        ) from err


def save_folder(
    directory: str | Path,
    soft_prompt,
    probe,
    metadata: dict[str, str],
    results: str | Path | dict | None = None,
    training_data: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write ``reminder.safetensors`` and its model card into ``directory``; returns the folder."""
    from reminder_lightning.reminder.artifact import load_reminder, save_reminder

    results = _results(results)  # a bad results file stops before anything is written
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    artifact = save_reminder(directory / ARTIFACT_FILE, soft_prompt, probe, metadata)
    saved = load_reminder(artifact)  # the card describes what was written, hash included
    card = model_card(saved.metadata, results, training_data, repo_id, has_probe=saved.probe is not None)
    (directory / CARD_FILE).write_text(card)
    return directory


def push_folder(
    directory: str | Path,
    repo_id: str,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
) -> Any:
    """Create ``repo_id`` if needed and upload the folder as one commit; returns the hub's commit info.

    ``api``: an ``huggingface_hub.HfApi`` (default: a new one, which reads ``HF_TOKEN`` / ``HF_ENDPOINT``).
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id, private=private, token=token, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id, folder_path=str(directory), revision=revision, token=token,
        commit_message=commit_message or "Upload a Safety Reminder (reminder_lightning)",
    )  # fmt: skip


def push_to_hub(
    soft_prompt,
    probe,
    metadata: dict[str, str],
    repo_id: str,
    results: str | Path | dict | None = None,
    training_data: str | None = None,
    **push: Any,
) -> Any:
    """``save_folder`` into a temporary folder, then ``push_folder`` it (``push``: its keyword arguments)."""
    with tempfile.TemporaryDirectory() as tmp:
        save_folder(tmp, soft_prompt, probe, metadata, results, training_data, repo_id)
        return push_folder(tmp, repo_id, **push)


def _results(results: str | Path | dict | None) -> dict | None:
    if results is None or isinstance(results, dict):
        return results
    path = Path(results)
    if path.is_dir():
        path = path / "compare.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"No compare results at {path}. Fix: give the compare.json (or its folder) that "
            "`python -m reminder_lightning compare` wrote."
        )
    data = json.loads(path.read_text())
    if "results" not in data:
        raise ValueError(f"{path} has no 'results' list: it is not a compare.json.")
    return data


def _short(value: str | None) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def _pct(rate: dict | None) -> str:
    if not rate:
        return "-"
    low, high = rate["ci95"]
    return f"{100 * rate['value']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def model_card(
    metadata: dict[str, str],
    results: dict | None = None,
    training_data: str | None = None,
    repo_id: str | None = None,
    has_probe: bool = True,
) -> str:
    """A Hub model card (YAML front matter + Markdown) for an artifact's ``metadata`` and optional ``compare``
    ``results``; it states only what the artifact and the results say."""
    base = metadata.get("base_model", "unknown")
    front = ["---", "library_name: reminder_lightning", "tags: [safety, jailbreak-defense, vision-language-model, "
             "soft-prompt, safety-reminder]"]  # fmt: skip
    if "/" in base and not base.startswith(("/", ".")) and ":" not in base:
        front.append(f"base_model: {base}")
    front.append("---")
    gate = json.loads(metadata["gate"]) if metadata.get("gate") else None
    rows = [
        ("base model", f"`{base}`"),
        ("family / model type", f"{metadata.get('family', '-')} / {metadata.get('model_type', '-')}"),
        ("objective", metadata.get("objective", "sapt")),
        ("vectors", f"{metadata.get('num_tokens')} x {metadata.get('hidden_size')} (fp32)"),
        (
            "initialised from",
            f"`{metadata['init_text']}`" if metadata.get("init_text") else metadata.get("init", "-"),
        ),
        ("check interval", f"every {metadata.get('interval', '-')} generated tokens"),
        (
            "gate",
            f"{metadata.get('mode', '-')}, inject when P(safe) < {_short(metadata.get('threshold'))}"
            if has_probe
            else "none (always on)",
        ),  # fmt: skip
        ("training data", training_data or metadata.get("training_data") or "not recorded in the artifact"),
        (
            "package / format",
            f"reminder_lightning {metadata.get('package_version')} / {metadata.get('format_version')}",
        ),
        ("content SHA-256", f"`{metadata.get('content_sha256', '-')}`"),
    ]
    if gate:
        chosen = gate.get("chosen", "-")
        rule = gate.get("threshold_rule", "-")
        target = gate.get("target_fpr", "-")
        rows.append(("gate calibration", f"{chosen}, threshold rule {rule}, target benign FPR {target}"))
    repo = repo_id or "path/to/this/folder"
    lines = [
        *front,
        "",
        f"# Safety Reminder for {base}",
        "",
        f"A trained [Safety Reminder]({PAPER}) (AAAI 2026): {metadata.get('num_tokens')} embedding vectors that are "
        "appended to the model's own answer every few tokens; a linear probe on the hidden state at the reminder "
        "decides whether they stay (the answer turns to a refusal) or are masked out (the answer goes on exactly as "
        "without them). The model's weights are not changed. Made with reminder_lightning.",
        "",
        "## Use",
        "",
        "```python",
        "from reminder_lightning import SafetyReminder",
        "",
        f'reminder = SafetyReminder.from_pretrained("{repo}")',
        "outputs = reminder.generate(model, processor, images, prompts, max_new_tokens=256)",
        "```",
        "",
        f"`model` and `processor` are the transformers objects of `{base}`; the reminder refuses to run on another "
        "model type.",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "## Results",
        "",
        *_results_lines(results),
        "",
        "## Intended use and limits",
        "",
        "- A research defence against jailbreaks of vision-language models, for the base model above only.",
        "- The gate is a linear probe: an attacker who knows it can optimise an input that keeps it closed (an "
        "adaptive image attack does), so numbers measured against attacks that ignore the defence do not hold "
        "against one that targets it.",
        "- Tokens generated before the first check that flags are shown to the user (leakage).",
        "- Refusal and harmfulness are decided by automatic judges; each result above names its judge and n.",
        "- Not a replacement for the model provider's own safety training or content filtering.",
        "",
    ]
    return "\n".join(lines)


def _results_lines(results: dict | None) -> list[str]:
    if not results:
        return [
            "No measured results were attached to this card. Measure with `python -m reminder_lightning test` and "
            "`compare`, then save or push with `results=` the compare.json."
        ]
    lines = [
        "From `python -m reminder_lightning compare` (Wilson 95% intervals; ASR counts answers the judge decided).",
        "",
        "| benchmark | judge | run | n | harmful ASR | over-refusal | benign unchanged | gate rate harmful / benign |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["results"]:
        gates = f"{_pct(r.get('gate_rate_harmful'))} / {_pct(r.get('gate_rate_benign'))}"
        lines.append(
            f"| {r['benchmark']} | {r['judge']} | {r['run']} | {r['n']} | {_pct(r.get('asr'))} | "
            f"{_pct(r.get('over_refusal'))} | {_pct(r.get('benign_unchanged'))} | {gates} |"
        )
    return lines
