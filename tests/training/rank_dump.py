"""A callback used by the DDP test: every rank saves its own soft prompt at the end of fit."""

from pathlib import Path

import lightning as L
from safetensors.torch import save_file


class DumpSoftPrompt(L.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)

    def on_fit_end(self, trainer, pl_module):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        weight = pl_module.soft_prompt.weight.detach().cpu().contiguous()
        save_file({"soft_prompt": weight}, str(self.out_dir / f"rank{trainer.global_rank}.safetensors"))
