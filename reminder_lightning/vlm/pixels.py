"""Differentiable image preprocessing: pixels in [0, 1] -> the model's image inputs, with gradients.

Attacks that optimise pixels (PGD) need what the processor does to an image, but in torch so gradients
reach the pixels: resize (only where the processor resizes; torch's antialiased interpolation with the
processor's filter), centre crop, rescale, normalise with the processor's own mean / std, then the
family's layout (Qwen2-VL: patches flattened with the temporal patch duplicated, plus ``image_grid_thw``;
LLaVA-NeXT: a base view and the tiles of the image fitted onto its grid, plus ``image_sizes``, see
:func:`anyres_inputs`). Every setting is read from the image processor object, so a checkpoint's
``preprocessor_config.json`` is honoured; the family decides only the resize geometry and the layout
(:meth:`VLMFamily.resized_image_size`, :meth:`VLMFamily.pixel_inputs`).

Exactness: an image that already has the processor's output size (:func:`processed_size`) is not resized
and the output equals the processor's on the same image saved as 8-bit PNG, to float32 rounding
(``1e-6``). With a resize it is close, not equal: the resize follows PIL's (width pass, then height pass,
each clipped and rounded to 1/255 with a straight-through rounding so gradients pass), and torch's
antialiased kernels differ from PIL's fixed-point ones by at most one 8-bit level at a few pixels
(tested on random-noise images, the worst case).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# PIL's resampling filters (PIL.Image.Resampling values) -> torch interpolate modes
_PIL_TO_TORCH = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
_NAME_TO_TORCH = {
    "nearest": "nearest-exact",
    "nearest_exact": "nearest-exact",
    "bilinear": "bilinear",
    "bicubic": "bicubic",
}


def _setting(image_processor, name: str, default: Any = None) -> Any:
    value = getattr(image_processor, name, None)
    return default if value is None else value


def _size_dict(size: Any) -> dict[str, int]:
    """A processor ``size`` / ``crop_size`` (dict or ``SizeDict``) as a plain dict without the unset keys."""
    if size is None:
        return {}
    items = size.items() if isinstance(size, dict) else vars(size).items()
    return {k: int(v) for k, v in items if v is not None}


def check_supported(image_processor) -> None:
    """Fail clearly on preprocessing this module does not reproduce (multi-crop layouts)."""
    if getattr(image_processor, "image_grid_pinpoints", None):
        raise ValueError(
            f"{type(image_processor).__name__} splits images into a grid of crops ('anyres'); differentiable "
            "preprocessing supports single-view processors (LLaVA-1.5, Qwen2-VL, Gemma 3 without pan-and-scan) and "
            "LLaVA-NeXT's grid (model_type llava_next), not this model's."
        )
    if getattr(image_processor, "do_pan_and_scan", False):
        raise ValueError(
            "The Gemma 3 processor has do_pan_and_scan=True, which adds crops; set it to False "
            "(VLMSpec.processor_kwargs: {do_pan_and_scan: false}) for differentiable preprocessing."
        )


def generic_resize_size(image_processor, height: int, width: int) -> tuple[int, int]:
    """``(H, W)`` the generic image processor resizes a ``height x width`` image to (before any crop).

    Uses transformers' own geometry functions: ``shortest_edge`` (+ ``longest_edge``) keeps the aspect
    ratio, ``height`` / ``width`` is a fixed size, ``max_height`` / ``max_width`` fits inside.
    """
    import numpy as np
    from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio
    from transformers.image_utils import ChannelDimension, get_image_size_for_max_height_width

    if not _setting(image_processor, "do_resize", False):
        return height, width
    size = _size_dict(image_processor.size)
    if "shortest_edge" in size and "longest_edge" in size:
        return tuple(get_size_with_aspect_ratio((height, width), size["shortest_edge"], size["longest_edge"]))
    if "shortest_edge" in size:
        dummy = np.zeros((1, height, width), dtype=np.uint8)
        return tuple(
            get_resize_output_image_size(
                dummy, size["shortest_edge"], default_to_square=False, input_data_format=ChannelDimension.FIRST
            )
        )
    if "max_height" in size and "max_width" in size:
        return tuple(get_image_size_for_max_height_width((height, width), size["max_height"], size["max_width"]))
    if "height" in size and "width" in size:
        return size["height"], size["width"]
    raise ValueError(f"{type(image_processor).__name__}: cannot tell the resize size from size={size}.")


def qwen2_vl_resize_size(image_processor, height: int, width: int) -> tuple[int, int]:
    """Qwen2-VL's ``smart_resize``: multiples of ``patch_size * merge_size`` within the pixel budget."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    if not _setting(image_processor, "do_resize", False):
        return height, width
    size = _size_dict(image_processor.size)
    factor = int(image_processor.patch_size) * int(image_processor.merge_size)
    return tuple(smart_resize(height, width, factor, size["shortest_edge"], size["longest_edge"]))


def processed_size(family, image_processor, height: int, width: int) -> tuple[int, int]:
    """``(H, W)`` of the image the model sees (after resize and centre crop): an image of this size passes
    the processor without being resized, which is where optimised pixels are exact."""
    h, w = family.resized_image_size(image_processor, height, width)
    if _setting(image_processor, "do_center_crop", False):
        crop = _size_dict(image_processor.crop_size)
        h, w = crop["height"], crop["width"]
    return int(h), int(w)


def _interpolation(image_processor) -> str:
    resample = _setting(image_processor, "resample", 2)
    key = getattr(resample, "value", resample)
    mode = _PIL_TO_TORCH.get(key) if isinstance(key, int) else _NAME_TO_TORCH.get(str(key).lower())
    if mode is None:
        raise ValueError(
            f"{type(image_processor).__name__} resizes with filter {resample!r}, which torch has no match for; "
            "pass images already at the processed size (processed_size()) so no resize happens."
        )
    return mode


def _round_to_255(x: torch.Tensor) -> torch.Tensor:
    """Forward: the nearest 1/255 level (as PIL's 8-bit resize gives); backward: identity."""
    return x + (torch.round(x * 255) / 255 - x).detach()


def _resize_like_pil(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize as PIL does an 8-bit image: the width pass, then the height pass, each clipped to [0, 1] and
    rounded to 1/255 (straight-through) in between; antialiased kernels (PIL's, with bicubic a = -0.5)."""
    height, width = size
    if x.shape[-1] != width:
        x = _round_to_255(F.interpolate(x, size=(x.shape[-2], width), mode=mode, antialias=True).clamp(0.0, 1.0))
    if x.shape[-2] != height:
        x = _round_to_255(F.interpolate(x, size=(height, width), mode=mode, antialias=True).clamp(0.0, 1.0))
    return x


def _center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if height > h or width > w:
        raise ValueError(f"centre crop {height}x{width} is larger than the resized image {h}x{w}")
    top, left = (h - height) // 2, (w - width) // 2  # transformers' centre_crop offsets
    return x[..., top : top + height, left : left + width]


def normalised_pixels(family, image_processor, pixels: torch.Tensor) -> torch.Tensor:
    """Resize, crop, rescale and normalise ``pixels`` ``(B, 3, H, W)`` in [0, 1] as the processor does.

    Returns ``(B, 3, H', W')`` float32, where ``(H', W')`` is :func:`processed_size`.
    """
    check_supported(image_processor)
    height, width = pixels.shape[-2:]
    return _processor_steps(image_processor, pixels, family.resized_image_size(image_processor, height, width))


def _processor_steps(image_processor, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``pixels`` ``(B, 3, H, W)`` in [0, 1] to ``size``, then centre crop, rescale and normalise."""
    x = pixels.float()
    if tuple(size) != tuple(x.shape[-2:]):
        x = _resize_like_pil(x, tuple(size), _interpolation(image_processor))
    if _setting(image_processor, "do_center_crop", False):
        crop = _size_dict(image_processor.crop_size)
        x = _center_crop(x, crop["height"], crop["width"])
    scale = float(_setting(image_processor, "rescale_factor", 1 / 255)) * 255.0
    if not _setting(image_processor, "do_rescale", True):
        scale = 255.0  # the processor would feed 0..255 values on
    if abs(scale - 1.0) > 1e-12:
        x = x * scale
    if _setting(image_processor, "do_normalize", False):
        mean = torch.tensor(image_processor.image_mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
        std = torch.tensor(image_processor.image_std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
        x = (x - mean) / std
    return x


def qwen2_vl_patches(image_processor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Qwen2-VL's layout: ``(B, 3, H, W)`` normalised -> ``pixel_values`` ``(B * gh * gw, 3 * t * p * p)``
    (patches in merge-window order, each frame duplicated ``t = temporal_patch_size`` times) and
    ``image_grid_thw`` ``(B, 3)`` = ``[1, gh, gw]``."""
    p, m, t = (
        int(image_processor.patch_size),
        int(image_processor.merge_size),
        int(image_processor.temporal_patch_size),
    )
    b, c, h, w = pixels.shape
    gh, gw = h // p, w // p
    x = pixels.reshape(b, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (B, gh/m, gw/m, m, m, C, p, p)
    x = x.unsqueeze(6).expand(*x.shape[:6], t, p, p)  # (B, ..., C, t, p, p)
    values = x.reshape(b * gh * gw, c * t * p * p)
    grid = torch.tensor([[1, gh, gw]] * b, dtype=torch.long, device=pixels.device)
    return {"pixel_values": values, "image_grid_thw": grid}


def anyres_inputs(image_processor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """LLaVA-NeXT's "anyres" layout of ``pixels`` ``(B, 3, H, W)`` in [0, 1], as its image processor builds it.

    The processor picks the grid resolution of ``image_grid_pinpoints`` that keeps the most of the image
    (``select_best_resolution``), resizes the image to fit it with its aspect ratio, pads it centred with black
    (8-bit 0) and cuts it into ``crop_size`` tiles, row by row; in front goes a base view, the whole image squashed
    to ``size``. Each view then goes through the usual steps (resize, crop, rescale, normalise).

    Returns ``pixel_values`` ``(B, 1 + tiles, 3, S, S)`` and ``image_sizes`` ``(B, 2)`` = ``[H, W]``, from which
    the model counts each image's tiles and unpads their features (so the image tokens match the prompt's).
    """
    from transformers.image_processing_utils import select_best_resolution

    b, _, height, width = pixels.shape
    x = pixels.float()
    base_size, tile = anyres_view_sizes(image_processor)
    grid_h, grid_w = select_best_resolution((height, width), image_processor.image_grid_pinpoints)
    fitted = anyres_fitted_size(image_processor, height, width)
    mode = _interpolation(image_processor)
    top, left = (grid_h - fitted[0]) // 2, (grid_w - fitted[1]) // 2  # the processor's centred padding
    canvas = F.pad(
        _resize_like_pil(x, fitted, mode), (left, grid_w - fitted[1] - left, top, grid_h - fitted[0] - top)
    )
    tiles = [
        canvas[..., i : i + tile, j : j + tile] for i in range(0, grid_h, tile) for j in range(0, grid_w, tile)
    ]
    views = [_resize_like_pil(x, base_size, mode), *tiles]
    steps = [
        _processor_steps(image_processor, v, generic_resize_size(image_processor, *v.shape[-2:])) for v in views
    ]
    sizes = torch.tensor([[height, width]] * b, dtype=torch.long, device=pixels.device)
    return {"pixel_values": torch.stack(steps, dim=1), "image_sizes": sizes}


def anyres_view_sizes(image_processor) -> tuple[tuple[int, int], int]:
    """``((H, W) of the base view, tile side)`` of a LLaVA-NeXT image processor (as its ``_preprocess``)."""
    size, crop = _size_dict(image_processor.size), _size_dict(image_processor.crop_size)
    if "height" in size and "width" in size:
        base = (size["height"], size["width"])
    else:
        base = (size["shortest_edge"], size["shortest_edge"])
    tile = crop.get("height") or size.get("height") or size["shortest_edge"]
    return base, int(tile)


def anyres_fitted_size(image_processor, height: int, width: int) -> tuple[int, int]:
    """``(H, W)`` a ``height x width`` image is resized to inside its best grid resolution (aspect kept)."""
    import numpy as np
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
    from transformers.image_utils import ChannelDimension

    grid = select_best_resolution((height, width), image_processor.image_grid_pinpoints)
    dummy = np.zeros((1, height, width), dtype=np.uint8)
    return tuple(int(v) for v in get_patch_output_size(dummy, grid, input_data_format=ChannelDimension.FIRST))


def pixel_inputs(family, image_processor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The image tensors the model takes for ``pixels`` ``(3, H, W)`` or ``(B, 3, H, W)`` in [0, 1].

    Differentiable with respect to ``pixels``; ``pixel_values`` is float32 (cast it to the model dtype).
    """
    if pixels.ndim == 3:
        pixels = pixels.unsqueeze(0)
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be (3, H, W) or (B, 3, H, W) RGB in [0, 1], got {tuple(pixels.shape)}")
    return family.pixel_inputs(image_processor, pixels)


def processed_image(family, image_processor, image):
    """``image`` (PIL) resized and centre-cropped as the processor does, as 8-bit RGB at
    :func:`processed_size`: the processor passes it unchanged, so pixel attacks start from it."""
    from PIL import Image

    image = image.convert("RGB")
    size = family.resized_image_size(image_processor, image.height, image.width)
    if tuple(size) != (image.height, image.width):
        resample = _setting(image_processor, "resample", 2)
        image = image.resize((size[1], size[0]), Image.Resampling(int(getattr(resample, "value", resample))))
    if _setting(image_processor, "do_center_crop", False):
        crop = _size_dict(image_processor.crop_size)
        top, left = (image.height - crop["height"]) // 2, (image.width - crop["width"]) // 2
        image = image.crop((left, top, left + crop["width"], top + crop["height"]))
    return image
