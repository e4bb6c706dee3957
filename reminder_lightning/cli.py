"""Command line: ``python -m reminder_lightning {fit,validate,test,probe,judge} --config CONFIG``.

A thin ``LightningCLI``: the model is :class:`SafetyReminderModule`, the data a
:class:`HarmfulBenignDataModule` (or a subclass). ``model.vlm`` and ``model.num_tokens`` are linked
into the data module, so each is set once.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from reminder_lightning.data.datamodule import HarmfulBenignDataModule
from reminder_lightning.training.module import SafetyReminderModule


class ReminderCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.vlm", "data.init_args.vlm")
        parser.link_arguments("model.num_tokens", "data.init_args.num_tokens")


class EvaluationCLI(LightningCLI):
    """``test``: evaluate a defence on benchmarks (see :mod:`reminder_lightning.evaluation.run`)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.output_dir", "data.output_dir")

    def after_test(self) -> None:
        # With every sample already answered (a finished run, resumed) Lightning skips the test loop and its
        # hooks; the report is still produced from what is on disk.
        if self.model.summary is None and self.trainer.is_global_zero:
            self.model.finalize(self.datamodule.order)


EXTRA_COMMANDS = {
    "probe": "reminder_lightning.commands.probe",
    "judge": "reminder_lightning.commands.judge",
    "attack": "reminder_lightning.commands.attack",
}


def main(args: list[str] | None = None, run: bool = True):
    """Entry point; ``args`` lets tests call the real CLI in-process.

    ``probe`` and ``judge`` are commands of their own; ``test`` runs the evaluation CLI; ``fit`` /
    ``validate`` / ``predict`` go to the training CLI.
    """
    import importlib
    import sys

    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in EXTRA_COMMANDS:
        return importlib.import_module(EXTRA_COMMANDS[argv[0]]).main(argv[1:])
    if argv and argv[0] == "test":
        from reminder_lightning.evaluation.run import BenchmarkDataModule, EvaluationModule

        return EvaluationCLI(
            EvaluationModule,
            BenchmarkDataModule,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
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
