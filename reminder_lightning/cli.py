"""Command line: ``python -m reminder_lightning <command> --config CONFIG`` (``--help``: every command).

A thin ``LightningCLI``: the model is :class:`SafetyReminderModule`, the data a
:class:`HarmfulBenignDataModule` (or a subclass). ``model.vlm`` and ``model.num_tokens`` are linked
into the data module, so each is set once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from reminder_lightning.data.datamodule import HarmfulBenignDataModule
from reminder_lightning.training.module import SafetyReminderModule


class ReminderCLI(LightningCLI):
    """``fit`` / ``validate``: the model's :class:`ReminderSchedule` is the one home of interval, threshold and gate
    mode; it is linked into the data module (SAPT's check-point cuts), so the two cannot disagree. Setting the data
    module's copy directly is refused with a message that says where to set it."""

    def parse_arguments(self, parser, args) -> None:
        _refuse_data_schedule(sys.argv[1:] if args is None else list(args))
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Resuming with ``--ckpt_path``: the checkpoint gives the trained tensors and optimizer state; the config
        and the command line give every setting. (Lightning would put the checkpoint's hyper-parameters back over
        them, so a new ``--model.export_path`` or threshold would be silently ignored.) Settings that change what
        the stored tensors mean (the model, the number of reminder tokens) must agree with the checkpoint."""
        import torch

        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        stored = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        model = self.config[sub].get("model")
        for key, current, before in (
            ("model.num_tokens", model.get("num_tokens"), stored.get("num_tokens")),
            ("model.vlm.name_or_path", model.get("vlm", {}).get("name_or_path"), _vlm_name(stored.get("vlm"))),
        ):
            if before is not None and current != before:
                raise ValueError(
                    f"--ckpt_path {ckpt_path} was trained with {key}={before!r}, but this run sets {current!r}: "
                    f"its tensors belong to that setting. Fix: set {key} to {before!r}, or train from scratch."
                )

    def before_validate(self) -> None:
        """``validate`` with no validation records would run nothing and exit silently: stop and say why."""
        if getattr(self.datamodule, "val_fraction", None) == 0:
            raise ValueError(
                "validate: the data module holds no validation records (data.init_args.val_fraction is 0). Fix: "
                "--data.init_args.val_fraction 0.1 (a held-out share of each pool), or evaluate answers with `test`."
            )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """``fit`` and ``validate``: ``test`` is the evaluation CLI's, and ``predict`` is not offered."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k in ("fit", "validate")}

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.vlm", "data.init_args.vlm")
        parser.link_arguments("model.num_tokens", "data.init_args.num_tokens")
        parser.link_arguments("model.schedule", "data.init_args.schedule")


def _vlm_name(vlm) -> str | None:
    if vlm is None:
        return None
    return vlm.get("name_or_path") if isinstance(vlm, dict) else getattr(vlm, "name_or_path", None)


def _refuse_data_schedule(argv: list[str]) -> None:
    """Fail when a config file or argument sets ``data.init_args.schedule`` (the link would silently replace it)."""
    import yaml

    def found(where: str, value) -> None:
        raise ValueError(
            f"{where} sets the data module's schedule ({value}), but the schedule has one home: `model.schedule` "
            "(interval, threshold, mode), which the CLI links into the data module so SAPT cuts prefixes where "
            "generation checks. Fix: remove it there and set `model.schedule.interval` (etc.) instead."
        )

    for i, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if name.startswith(("--data.init_args.schedule", "--data.schedule")):
            found(f"The argument {arg!r}", argv[i + 1] if "=" not in arg and i + 1 < len(argv) else arg)
        if name in ("--config", "-c"):
            path = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else None)
            if path is None or not Path(path).is_file():
                continue
            config = yaml.safe_load(Path(path).read_text()) or {}
            data = config.get("data") if isinstance(config, dict) else None
            if isinstance(data, dict):
                value = (data.get("init_args") or {}).get("schedule", data.get("schedule"))
                if value is not None:
                    found(f"The config file {path} (data.init_args.schedule)", value)


class SaveConfigToOutputDir(SaveConfigCallback):
    """``test`` saves its full configuration beside its results (``<output_dir>/config.yaml``), not in the working
    directory: the evaluation runs without a logger, so Lightning's log dir would be wherever it was started."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        path = Path(pl_module.output_dir) / self.config_filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(
            self.config, str(path), skip_none=False, overwrite=self.overwrite, multifile=self.multifile
        )


class EvaluationCLI(LightningCLI):
    """``test``: evaluate a defence on benchmarks (see :mod:`reminder_lightning.evaluation.run`)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.output_dir", "data.output_dir")

    def after_test(self) -> None:
        # With every sample already answered (a finished run, resumed) Lightning skips the test loop and its
        # hooks; the report is still produced from what is on disk.
        if self.model.summary is None and self.trainer.is_global_zero:
            self.model.finalize(self.datamodule.order)


COMMANDS = {  # command -> one line for the top-level help
    "fit": "train a reminder (SAPT) or a baseline's vectors (objective: prompt tuning, DRO); LightningCLI",
    "validate": "the SAPT losses on the data module's validation share (data.init_args.val_fraction > 0)",
    "test": "answer benchmarks with a defence, judge them, write summary.md / plots (resumable)",
    "compare": "N evaluation folders -> one table (compare.md/.json/.png), or a config: defences x benchmarks",
    "probe": "fit the prompt-end probe, or calibrate the gate at the reminder inside answers",
    "judge": "re-judge saved generations with other judges, or validate a judge against human labels",
    "attack": "build attacked benchmarks: FigStep / TYPO images, PGD, adaptive PGD, GCG, BAP",
    "robustness": "every defence against attacks that ignore it and attacks that know it: ASR against budget",
    "harden": "adversarial calibration: rounds of an adaptive attack on the gate and a refit with its images",
    "select-spa-vl": "the reference's SPA-VL training selection (Llama Guard-vetted pairs)",
}
NOT_OFFERED = {
    "predict": "`predict` is not offered: to answer prompts with a defence, put them in a file and run `test` "
    "with a GenericBenchmark (writes generations.jsonl), or call SafetyReminder.generate from Python.",
}

EXTRA_COMMANDS = {
    "probe": "reminder_lightning.commands.probe",
    "judge": "reminder_lightning.commands.judge",
    "attack": "reminder_lightning.commands.attack",
    "compare": "reminder_lightning.commands.compare",
    "robustness": "reminder_lightning.commands.robustness",
    "harden": "reminder_lightning.commands.harden",
    "select-spa-vl": "reminder_lightning.commands.select_spa_vl",
}


def main(args: list[str] | None = None, run: bool = True):
    """Entry point; ``args`` lets tests call the real CLI in-process.

    ``probe`` and ``judge`` are commands of their own; ``test`` runs the evaluation CLI; ``fit`` /
    ``validate`` / ``predict`` go to the training CLI.
    """
    import importlib
    import warnings

    # Lightning's own use of a deprecated torch pytree API: nothing a user of this CLI can change.
    warnings.filterwarnings(
        "ignore", message=r".*LeafSpec.* is deprecated", module=r"lightning\.pytorch\.utilities\._pytree"
    )
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(_help())
        if not argv:
            raise SystemExit(2)  # a command is needed
        return None
    if argv[0] in NOT_OFFERED:
        raise SystemExit(NOT_OFFERED[argv[0]])
    if argv[0] in EXTRA_COMMANDS:
        rest = ["--config" if a == "-c" else a for a in argv[1:]]  # as fit and test accept it
        return importlib.import_module(EXTRA_COMMANDS[argv[0]]).main(rest)
    if argv and argv[0] == "test":
        from reminder_lightning.evaluation.run import BenchmarkDataModule, EvaluationModule

        return EvaluationCLI(
            EvaluationModule,
            BenchmarkDataModule,
            seed_everything_default=0,
            save_config_callback=SaveConfigToOutputDir,
            save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
            auto_configure_optimizers=False,
            args=None if args is None else argv,
            run=run,
        )
    return ReminderCLI(
        SafetyReminderModule,
        HarmfulBenignDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def _help() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: python -m reminder_lightning <command> [-c CONFIG] [--print_config] [options]",
        "",
        "Train, evaluate and ship the Safety Reminder for vision-language models.",
        "",
        "commands:",
        *[f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()],
        "",
        "`python -m reminder_lightning <command> --help` lists a command's options.",
    ]
    return "\n".join(lines)
