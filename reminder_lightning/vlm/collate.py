"""Batching of single-example encodings (token tensors padded, image tensors concatenated)."""

from __future__ import annotations

import torch


def collate_encodings(
    items: list[dict[str, torch.Tensor]],
    token_keys: list[str],
    pad_values: dict[str, int],
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """Pad per-token tensors (batch-1 rows) to one length and concatenate the rest along dim 0.

    Args:
        items: encodings of single examples (token tensors of shape ``(1, L_i)``).
        token_keys: which keys are per-token (padded); all other tensors (``pixel_values``,
            ``image_grid_thw``, ``image_sizes``...) are concatenated over the items that have them.
        pad_values: pad value per token key (0 when absent; ``labels`` should map to -100).
        padding_side: ``right`` for training, ``left`` for generation.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    batch: dict[str, torch.Tensor] = {}
    longest = max(int(item["input_ids"].shape[-1]) for item in items)
    for key in token_keys:
        rows = []
        for item in items:
            row = item[key].reshape(-1)
            pad = torch.full((longest - row.shape[0],), pad_values.get(key, 0), dtype=row.dtype)
            rows.append(torch.cat([row, pad]) if padding_side == "right" else torch.cat([pad, row]))
        batch[key] = torch.stack(rows)
    other = {k for item in items for k, v in item.items() if torch.is_tensor(v) and k not in token_keys}
    for key in sorted(other):
        parts = [item[key] for item in items if key in item]
        batch[key] = torch.cat(parts, dim=0)
    return batch
