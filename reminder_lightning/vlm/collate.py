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
            ``image_grid_thw``, ``image_sizes``...) are concatenated over the items that have them; where only
            their second dimension differs they are first zero-padded at its end. That is LLaVA-NeXT's
            ``pixel_values`` ``(1, 1 + tiles, 3, H, W)``, with as many tiles as the image's grid: its processor
            pads a batch the same way, and the model keeps each image's first ``1 + tiles`` views, counted from
            ``image_sizes``. Idefics3's ``pixel_values`` ``(1, crops, 3, S, S)`` and ``pixel_attention_mask``
            ``(1, crops, S, S)`` pad the same way (its processor zero-pads both; the model drops all-zero crops).
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
        batch[key] = torch.cat(_pad_to_common_shape([item[key] for item in items if key in item]), dim=0)
    return batch


def _pad_to_common_shape(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """``parts`` zero-padded at the end of their second dimension to the longest; any other mismatch is an error."""
    if len({p.shape[1:] for p in parts}) <= 1:
        return parts
    if len({(p.dim(), p.shape[2:]) for p in parts}) > 1 or parts[0].dim() < 3:
        raise ValueError(
            f"Cannot batch image tensors of shapes {[tuple(p.shape) for p in parts]}: only their second dimension "
            "(LLaVA-NeXT's views, Idefics3's crops per image) may differ. Check that the image processor gives every image one size."
        )
    longest = max(p.shape[1] for p in parts)
    return [torch.nn.functional.pad(p, [0, 0] * (p.dim() - 2) + [0, longest - p.shape[1]]) for p in parts]
