"""Command line: ``python -m reminder_lightning {fit,validate,test,predict,probe} --config CONFIG``.

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


EXTRA_COMMANDS = {"probe": "reminder_lightning.commands.probe"}


def main(args: list[str] | None = None, run: bool = True):
    """Entry point; ``args`` lets tests call the real CLI in-process.

    ``probe`` is dispatched to its own command; everything else goes to Lightning.
    """
    import importlib
    import sys

    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in EXTRA_COMMANDS:
        return importlib.import_module(EXTRA_COMMANDS[argv[0]]).main(argv[1:])
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
