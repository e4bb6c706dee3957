"""One progress bar over optimisation steps, for jobs bounded by ``max_steps`` rather than epochs.

The PGD attacks loop over a handful of goals for hundreds of steps: Lightning's bar restarts every epoch and
shows ``Epoch 9/-2``. This bar counts ``trainer.global_step`` against ``max_steps`` (a resumed run starts where it
stopped), with the logged metrics beside it.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """``TQDMProgressBar`` whose training bar spans the whole run: ``global_step / max_steps``."""

    def __init__(self, description: str = "steps", refresh_rate: int = 1):
        super().__init__(refresh_rate=refresh_rate)
        self.description = description

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.max_steps is None or trainer.max_steps < 0:
            raise ValueError("StepProgressBar needs trainer.max_steps: it counts steps, not epochs.")
        self.train_progress_bar.reset(total=trainer.max_steps)
        self.train_progress_bar.n = trainer.global_step  # resumed: start where the checkpoint stopped
        self.train_progress_bar.set_description(self.description)
        self.train_progress_bar.refresh()

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        pass  # one bar for the run, not one per epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable and self._should_update(trainer.global_step, bar.total):
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            bar.refresh()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass  # closed once, at the end of training
