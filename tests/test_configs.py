"""Every YAML in configs/ parses against the real CLI (no model is loaded)."""

from pathlib import Path

import pytest

from reminder_lightning.cli import main

REPO = Path(__file__).resolve().parents[1]
JOBS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "trainer")
PRESETS = sorted((REPO / "configs" / "trainer").glob("*.yaml"))


def _parse(capsys, *configs: Path, command: str = "fit") -> str:
    args = [command]
    for config in configs:
        args += ["--config", str(config)]
    with pytest.raises(SystemExit) as done:
        main([*args, "--print_config"])
    assert done.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("config", JOBS, ids=lambda p: p.name)
def test_job_config_parses_and_is_headed_by_its_command(config, capsys):
    """Every job config (attacks, evaluation and probe ones included) parses with the command in its header."""
    first = config.read_text().splitlines()[0]
    assert first.startswith("# python -m reminder_lightning ") and str(config.relative_to(REPO)) in first
    words = first.split()
    command = words[4]
    configs = [REPO / words[i + 1] for i, w in enumerate(words) if w == "--config"]
    printed = _parse(capsys, *configs, command=command)
    assert (
        "name_or_path" in printed
        or "class_path: reminder_lightning.attacks.typographic" in printed
        or "class_path: reminder_lightning.evaluation.judges" in printed  # select-spa-vl: data and a judge
        or ("eval_config:" in printed and "class_path: reminder_lightning.defences" in printed)  # compare
    )


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_trainer_presets_compose_with_a_job(preset, capsys):
    printed = _parse(capsys, REPO / "configs" / "llava.yaml", preset)
    assert "strategy" in printed


def test_reference_defaults_in_real_configs(capsys):
    import yaml

    for name, hub_id in (
        ("llava.yaml", "llava-hf/llava-1.5-7b-hf"),
        ("qwen2_vl.yaml", "Qwen/Qwen2-VL-7B-Instruct"),
    ):
        cfg = yaml.safe_load((REPO / "configs" / name).read_text())
        model, data = cfg["model"], cfg["data"]["init_args"]
        assert model["vlm"]["name_or_path"] == hub_id
        assert model["num_tokens"] == 4 and model["schedule"] == {"interval": 16, "threshold": 0.2}
        assert model["cls_weight"] == 0.05 and model["init"] == "text"
        opt = model["optimizer"]["init_args"]
        assert opt == {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.01}
        assert data["batch_size"] == 4 and data["num_examples"] == 512 and data["harmful_fraction"] == 0.5
        assert data["sapt"]["max_length"] == 1024 and cfg["trainer"]["max_epochs"] == 50
        assert cfg["seed_everything"] == 0
        assert "AutoWandbLogger" in cfg["trainer"]["logger"]["class_path"]
    assert JOBS and PRESETS
