"""How reminder vectors enter a forward pass: one mechanism for training and generation.

Reminder positions are marked in ``input_ids`` with *placeholder ids* ``V, V+1, ..., V+n-1`` where
``V`` is the number of rows of the input embedding table, so a placeholder can never collide with a
real token. Two public PyTorch hooks on the model's input embedding module do the rest:

* a forward pre-hook swaps placeholders for token 0 (so the table lookup is valid) and remembers where
  they were;
* a forward hook writes the soft prompt's vectors (cast to the embedding dtype) into those rows.

Because the model still receives ``input_ids``, every family's stock ``forward`` runs unchanged:
image-token scattering, Qwen2-VL's multimodal rotary positions, Gemma 3's bidirectional image mask,
the KV cache. No private transformers method is touched.
"""

from __future__ import annotations

import torch
from torch import nn

from reminder_lightning.reminder.soft_prompt import SoftPrompt


class ReminderInjector:
    """Attach a :class:`SoftPrompt` to a model's input embedding module.

    Use as a context manager (``with injector: model(...)``) or call :meth:`attach` / :meth:`detach`.

    Args:
        embedding: ``model.get_input_embeddings()``.
        soft_prompt: The reminder vectors.
    """

    def __init__(self, embedding: nn.Module, soft_prompt: SoftPrompt):
        self.embedding = embedding
        self.soft_prompt = soft_prompt
        self.base_vocab = int(embedding.weight.shape[0])
        self._handles: list = []
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def placeholder_ids(self) -> list[int]:
        """Ids that stand for reminder vectors 0..n-1 in ``input_ids``."""
        return [self.base_vocab + i for i in range(self.soft_prompt.num_tokens)]

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> ReminderInjector:
        if not self._handles:
            self._handles = [
                self.embedding.register_forward_pre_hook(self._pre_hook),
                self.embedding.register_forward_hook(self._hook),
            ]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._pending = None

    def __enter__(self) -> ReminderInjector:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def _pre_hook(self, module: nn.Module, args: tuple):
        ids = args[0]
        mask = ids >= self.base_vocab
        if not bool(mask.any()):
            self._pending = None
            return None
        self._pending = (ids, mask)
        return (ids.masked_fill(mask, 0), *args[1:])

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if self._pending is None:
            return None
        ids, mask = self._pending
        self._pending = None
        return replace_placeholders(output, ids, mask, self.soft_prompt(output.dtype), self.base_vocab)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``inputs_embeds`` for ``input_ids`` with placeholders replaced; works attached or not."""
        mask = input_ids >= self.base_vocab
        if self.attached:
            return self.embedding(input_ids)
        base = self.embedding(input_ids.masked_fill(mask, 0))
        return replace_placeholders(base, input_ids, mask, self.soft_prompt(base.dtype), self.base_vocab)


def replace_placeholders(
    embeds: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, vectors: torch.Tensor, base_vocab: int
) -> torch.Tensor:
    """Rows of ``embeds`` ``(B, L, H)`` where ``mask`` ``(B, L)`` is set become ``vectors[ids - base_vocab]``."""
    index = (ids - base_vocab).clamp(0, vectors.shape[0] - 1)
    rows = vectors.to(embeds.device)[index]
    return torch.where(mask.unsqueeze(-1), rows, embeds)
