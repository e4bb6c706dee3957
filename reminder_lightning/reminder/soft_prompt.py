"""SoftPrompt: the learnable reminder vectors.

The vectors live in fp32 (master weights: small updates survive even when the model runs in bf16)
and are cast to the model's dtype at the point of use. Shape: ``(num_tokens, hidden_size)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

DEFAULT_INIT_TEXT = "Refuse if partial output is unsafe; else, continue helpfully."
InitKind = Literal["text", "vocab", "random"]


class SoftPrompt(nn.Module):
    """``num_tokens`` trainable embedding vectors.

    Args:
        num_tokens: Number of reminder vectors.
        hidden_size: Width of the language model's input embeddings.
    """

    def __init__(self, num_tokens: int, hidden_size: int):
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        self.weight = nn.Parameter(torch.zeros(num_tokens, hidden_size, dtype=torch.float32))

    @property
    def num_tokens(self) -> int:
        return int(self.weight.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The vectors, ``(num_tokens, hidden_size)``, cast to ``dtype`` (autograd flows to the fp32 master)."""
        return self.weight if dtype is None else self.weight.to(dtype)

    @torch.no_grad()
    def initialize(
        self,
        kind: InitKind,
        embedding: nn.Module,
        tokenizer=None,
        text: str = DEFAULT_INIT_TEXT,
        seed: int = 0,
    ) -> None:
        """Fill the vectors.

        Args:
            kind: ``text``: the embeddings of ``text``'s first ``num_tokens`` tokens (the text is
                repeated if it is too short), as the reference does; ``vocab``: embeddings of random
                vocabulary tokens; ``random``: normal noise with the embedding table's std.
            embedding: The model's input embedding module. Its *output* is used, so families that
                scale embeddings (Gemma) get vectors on the right scale.
            tokenizer: Needed for ``text``.
            text: Initialisation text for ``text``.
            seed: Seed for ``vocab`` and ``random``.
        """
        weight = embedding.weight
        device = weight.device
        generator = torch.Generator().manual_seed(seed)
        if kind == "text":
            if tokenizer is None:
                raise ValueError("SoftPrompt text init needs a tokenizer.")
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"The init text {text!r} tokenizes to nothing.")
            while len(ids) < self.num_tokens:
                ids = ids + ids
            ids = torch.tensor(ids[: self.num_tokens], device=device)
            values = embedding(ids)
        elif kind == "vocab":
            ids = torch.randint(0, weight.shape[0], (self.num_tokens,), generator=generator).to(device)
            values = embedding(ids)
        elif kind == "random":
            probe = embedding(torch.arange(min(weight.shape[0], 4096), device=device)).float()
            values = torch.randn(self.weight.shape, generator=generator) * probe.std()
        else:
            raise ValueError(f"Unknown init kind {kind!r}; use 'text', 'vocab' or 'random'.")
        self.weight.copy_(values.float().to(self.weight.device))
