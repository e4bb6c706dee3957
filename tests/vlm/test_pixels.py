"""Differentiable preprocessing against each tiny family's real image processor."""

import numpy as np
import pytest
import torch
from PIL import Image

from reminder_lightning.vlm.adapter import PromptBuilder, VLMSpec
from reminder_lightning.vlm.pixels import pixel_inputs, processed_image, processed_size
from tests.conftest import FAMILIES

#: families with a differentiable image path; Idefics3's refuses pixel attacks (see the last test)
PIXEL_FAMILIES = [f for f in FAMILIES if f != "idefics3"]


@pytest.fixture(scope="module")
def builders():
    return {f: PromptBuilder.load(VLMSpec(f"tiny:{f}")) for f in FAMILIES}


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random 8-bit noise: the worst case for resampling differences."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _ours(builder, array: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    pixels = torch.from_numpy(array).permute(2, 0, 1).float().div(255).requires_grad_(True)
    return pixel_inputs(builder.family, builder.processor.image_processor, pixels), pixels


@pytest.mark.parametrize("family", PIXEL_FAMILIES)
def test_equals_the_processor_without_resize_and_gradients_reach_every_pixel(builders, family):
    builder = builders[family]
    ip = builder.processor.image_processor
    height, width = processed_size(builder.family, ip, 64, 80)
    array = _noise(height, width)
    ref = ip(images=[Image.fromarray(array)], return_tensors="pt")
    ours, pixels = _ours(builder, array)
    assert ours["pixel_values"].shape == ref["pixel_values"].shape
    torch.testing.assert_close(ours["pixel_values"], ref["pixel_values"], atol=1e-6, rtol=0)
    if "image_grid_thw" in ref:  # Qwen: patches + grid; the grid also decides the number of image tokens
        assert torch.equal(ours["image_grid_thw"], ref["image_grid_thw"])
    if "image_sizes" in ref:  # LLaVA-NeXT: the size decides the grid, the tiles kept and the image tokens
        assert torch.equal(ours["image_sizes"], ref["image_sizes"])
    weights = torch.randn_like(ours["pixel_values"])
    (ours["pixel_values"] * weights).sum().backward()
    assert pixels.grad is not None and bool((pixels.grad != 0).all())


@pytest.mark.parametrize("family", PIXEL_FAMILIES)
@pytest.mark.parametrize("size", [(50, 70), (100, 90)])
def test_close_to_the_processor_when_it_resizes(builders, family, size):
    """Within one 8-bit level everywhere (after normalisation: 1/255/std), and nearly always exact."""
    builder = builders[family]
    ip = builder.processor.image_processor
    array = _noise(*size, seed=1)
    ref = ip(images=[Image.fromarray(array)], return_tensors="pt")
    ours, pixels = _ours(builder, array)
    assert ours["pixel_values"].shape == ref["pixel_values"].shape
    diff = (ours["pixel_values"].detach() - ref["pixel_values"]).abs()
    one_level = 1.01 / 255 / min(ip.image_std)
    assert float(diff.max()) <= one_level
    assert float(diff.mean()) < 1e-3
    for key in ("image_grid_thw", "image_sizes"):
        if key in ref:
            assert torch.equal(ours[key], ref[key])
    ours["pixel_values"].sum().backward()
    assert float(pixels.grad.abs().sum()) > 0


@pytest.mark.parametrize("family", PIXEL_FAMILIES)
def test_processed_image_is_what_the_processor_feeds_the_model(builders, family):
    builder = builders[family]
    ip = builder.processor.image_processor
    image = Image.fromarray(_noise(50, 70, seed=2))
    small = processed_image(builder.family, ip, image)
    assert (small.height, small.width) == processed_size(builder.family, ip, 50, 70)
    a = ip(images=[image], return_tensors="pt")
    b = ip(images=[small], return_tensors="pt")
    if "image_sizes" in a:  # LLaVA-NeXT: the base view is the image squashed; the tiles follow each image's size
        assert a["pixel_values"].shape[1] == 3 and torch.equal(b["image_sizes"], torch.tensor([[56, 56]]))
        a, b = a["pixel_values"][:, 0], b["pixel_values"][:, 0]
    else:
        a, b = a["pixel_values"], b["pixel_values"]
    assert torch.equal(a, b)


def test_unsupported_preprocessing_fails_clearly(builders):
    import copy

    ip = copy.deepcopy(builders["gemma3"].processor.image_processor)
    ip.do_pan_and_scan = True
    with pytest.raises(ValueError, match="do_pan_and_scan"):
        pixel_inputs(builders["gemma3"].family, ip, torch.rand(3, 56, 56))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        pixel_inputs(builders["llava"].family, builders["llava"].processor.image_processor, torch.rand(56, 56))


@pytest.mark.parametrize("call", ["pixel_inputs", "processed_image"])
def test_idefics3_refuses_pixel_attacks_naming_the_family_and_what_is_missing(builders, call):
    builder = builders["idefics3"]
    ip = builder.processor.image_processor
    with pytest.raises(NotImplementedError, match=r"idefics3 family.*image splitting.*LANCZOS"):
        if call == "pixel_inputs":
            pixel_inputs(builder.family, ip, torch.rand(3, 56, 56))
        else:
            processed_image(builder.family, ip, Image.fromarray(_noise(50, 70)))
