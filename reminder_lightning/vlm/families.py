"""The small differences between model families, in one place.

Everything else in the package is generic: prompts go through the processor's chat template, images
through its image processor, and any per-token tensor the processor returns (``attention_mask``,
Gemma 3's ``token_type_ids``, Qwen2-VL's ``mm_token_type_ids``, ...) is extended generically when tokens
are appended. A family class only overrides what that generic path gets wrong. To support a new
family, subclass :class:`VLMFamily`, set ``model_types`` and decorate it with :func:`register_family`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

_REGISTRY: dict[str, type[VLMFamily]] = {}


def register_family(cls: type[VLMFamily]) -> type[VLMFamily]:
    for model_type in cls.model_types:
        _REGISTRY[model_type] = cls
    return cls


class VLMFamily:
    """Generic behaviour, right for most ``AutoModelForImageTextToText`` models with a chat template."""

    name: ClassVar[str] = "generic"
    model_types: ClassVar[tuple[str, ...]] = ()
    #: value appended to a per-token tensor (same shape as ``input_ids``) for each new text token
    token_tensor_fill: ClassVar[dict[str, int]] = {"attention_mask": 1}

    def messages(self, question: str, has_image: bool, system_prompt: str | None = None) -> list[dict]:
        """Chat messages for one user turn: the image (if any) first, then the question."""
        content: list[dict] = [{"type": "image"}] if has_image else []
        content.append({"type": "text", "text": question})
        messages: list[dict] = []
        if system_prompt is not None:
            messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
        messages.append({"role": "user", "content": content})
        return messages

    def end_of_answer_ids(self, tokenizer, generation_eos: int | list[int] | None) -> list[int]:
        """Token ids that close an assistant answer in training targets (the first EOS by default)."""
        eos = generation_eos if generation_eos is not None else tokenizer.eos_token_id
        if isinstance(eos, list | tuple):
            eos = eos[0]
        if eos is None:
            raise ValueError("The model defines no EOS token; set one in its generation_config or tokenizer.")
        return [int(eos)]

    def fill_value(self, key: str) -> int:
        return self.token_tensor_fill.get(key, 0)

    def missing(self, config, processor, model=None) -> list[str]:
        """What this package needs from a model and its processor that they lack (empty: it can run).

        The generic path needs a chat template on the processor, an image token id in the config (the token the
        processor expands into one slot per image feature), ``get_input_embeddings`` on the model, and 1-D RoPE
        positions unless the family computes its own (:meth:`prefill_positions`): a model with a public
        ``get_rope_index`` (multimodal RoPE, Qwen2-VL-like) has positions the generic family would get wrong.
        """
        out = []
        if not getattr(processor, "chat_template", None):
            out.append("a chat template on the processor (processor.chat_template is not set)")
        if all(getattr(config, k, None) is None for k in ("image_token_id", "image_token_index")):
            out.append("an image token id in the config (image_token_id or image_token_index)")
        if model is None:
            return out
        try:
            model.get_input_embeddings()
        except (NotImplementedError, AttributeError):
            out.append("get_input_embeddings() on the model")
        generic_positions = type(self).prefill_positions is VLMFamily.prefill_positions
        if generic_positions and any(hasattr(m, "get_rope_index") for m in (model, getattr(model, "model", None))):
            out.append(
                "1-D positions: the model computes multimodal RoPE positions (get_rope_index), so a family must "
                "override prefill_positions / decode_positions (as Qwen2VLFamily does)"
            )
        return out

    # ------------------------------------------------------------------ positions for cached decoding
    def prefill_positions(self, model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """Position ids of a left-padded prompt batch and the state :meth:`decode_positions` needs.

        Default (1-D RoPE): the index among the sample's attended tokens, as ``generate`` computes it.
        """
        mask = inputs["attention_mask"]
        return text_positions(mask), None

    def decode_positions(self, attention_mask: torch.Tensor, num_new: int, state: Any) -> torch.Tensor:
        """Position ids of the last ``num_new`` tokens, given the full ``(B, past + num_new)`` mask.

        Tokens whose mask is 0 (padding, a reminder that was not kept) do not advance the position, so a
        sample continues exactly as if they were absent.
        """
        return text_positions(attention_mask)[:, -num_new:]

    # ------------------------------------------------------------------ differentiable pixels (attacks)
    def resized_image_size(self, image_processor, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` the image processor resizes a ``height x width`` image to (before any centre crop)."""
        from reminder_lightning.vlm.pixels import generic_resize_size

        return generic_resize_size(image_processor, height, width)

    def pixel_inputs(self, image_processor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's image inputs from pixels ``(B, 3, H, W)`` in [0, 1]: ``pixel_values``, the pixels resized,
        cropped and normalised as the processor does (:func:`~reminder_lightning.vlm.pixels.normalised_pixels`)."""
        from reminder_lightning.vlm.pixels import normalised_pixels

        return {"pixel_values": normalised_pixels(self, image_processor, pixels)}


def require_supported(family: VLMFamily, config, processor, name: str, model=None) -> None:
    """Fail early, naming the model type and each missing piece, when a model cannot run here
    (:meth:`VLMFamily.missing`); a model type without a registered family goes through the generic one."""
    missing = family.missing(config, processor, model)
    if missing:
        how = "no registered family: the generic path" if family.name == "generic" else f"family {family.name!r}"
        raise ValueError(
            f"{name}: model_type {config.model_type!r} ({how}) cannot run here; it lacks {'; '.join(missing)}. "
            "Fix: give the checkpoint what is missing, or register a VLMFamily for this model type in "
            "reminder_lightning/vlm/families.py (docs/guide.md, 'Supported families')."
        )


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``cumsum(mask) - 1``, with masked slots at 0: ``(B, L)`` long."""
    mask = attention_mask.long()
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


@register_family
class LlavaFamily(VLMFamily):
    """LLaVA-1.5 (llava-hf): CLIP tower, projector, Llama/Vicuna LM; ``USER: ... ASSISTANT:``."""

    name = "llava"
    model_types = ("llava",)


@register_family
class LlavaNextFamily(LlavaFamily):
    """LLaVA-NeXT (llava-hf ``llava-v1.6-*``): LLaVA-1.5's prompt and 1-D RoPE, with "anyres" images.

    The processor cuts an image into a base view and the tiles of its best grid resolution, so ``pixel_values`` is
    ``(images, 1 + tiles, 3, 336, 336)`` and ``image_sizes`` says each image's size; it counts the image tokens
    (the base view's, the tiles' after unpadding, a newline per row) from that size, and the model packs the
    features the same way. All of that lives in the processor and the model's forward (batches of images with
    different tile counts are zero-padded on the tile axis, as the processor pads them); what is left here is the
    differentiable layout for pixel attacks.
    """

    name = "llava_next"
    model_types = ("llava_next",)

    def resized_image_size(self, image_processor, height, width):
        """The base view's size: the whole image squashed to ``size`` (an image of that size is resized in neither
        view when its grid's shorter side is one tile, as on every LLaVA-NeXT checkpoint)."""
        from reminder_lightning.vlm.pixels import anyres_view_sizes

        return anyres_view_sizes(image_processor)[0]

    def pixel_inputs(self, image_processor, pixels):
        """The base view and the grid's tiles ``(B, 1 + tiles, 3, S, S)`` and ``image_sizes``."""
        from reminder_lightning.vlm.pixels import anyres_inputs

        return anyres_inputs(image_processor, pixels)


@register_family
class Qwen2VLFamily(VLMFamily):
    """Qwen2-VL and Qwen2.5-VL: dynamic-resolution ViT, M-RoPE. ``mm_token_type_ids`` (0 for text) drive M-RoPE.

    One family for both: Qwen2.5-VL changes the vision tower (windowed attention, gated MLP, RMSNorm), which lives
    inside the model's ``forward``, and keeps Qwen2-VL's image processor (the same patches, grid and token count),
    its ``get_rope_index`` for images and its text positions after the prompt. Its only addition to M-RoPE is the
    temporal spacing of video frames, read from the processor's ``second_per_grid_ts``.
    """

    name = "qwen2_vl"
    model_types = ("qwen2_vl", "qwen2_5_vl")

    def prefill_positions(self, model, inputs):
        """3-D M-RoPE positions from the model's public ``get_rope_index``; the per-sample offset of text
        positions after the image (``rope_deltas``) is the decode state."""
        grids = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")
        kwargs = {k: inputs[k] for k in grids if k in inputs}
        position_ids, deltas = model.model.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            attention_mask=inputs["attention_mask"],
            **kwargs,
        )
        return position_ids, deltas

    def decode_positions(self, attention_mask, num_new, state):
        text = text_positions(attention_mask)[:, -num_new:] + state.to(attention_mask.device)
        return text.unsqueeze(0).expand(3, -1, -1)

    def resized_image_size(self, image_processor, height, width):
        from reminder_lightning.vlm.pixels import qwen2_vl_resize_size

        return qwen2_vl_resize_size(image_processor, height, width)

    def pixel_inputs(self, image_processor, pixels):
        """Flattened patches (temporal patch duplicated) and ``image_grid_thw``."""
        from reminder_lightning.vlm.pixels import normalised_pixels, qwen2_vl_patches

        return qwen2_vl_patches(image_processor, normalised_pixels(self, image_processor, pixels))


@register_family
class Gemma3Family(VLMFamily):
    """Gemma 3: SigLIP tower, pooled soft image tokens with bidirectional attention (``token_type_ids``)."""

    name = "gemma3"
    model_types = ("gemma3",)

    def end_of_answer_ids(self, tokenizer, generation_eos):
        end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
        if end_of_turn is None or end_of_turn == tokenizer.unk_token_id:
            return super().end_of_answer_ids(tokenizer, generation_eos)
        return [int(end_of_turn)]


@register_family
class Idefics3Family(VLMFamily):
    """Idefics3 and SmolVLM (``HuggingFaceTB/SmolVLM-*``, model type ``idefics3``): SigLIP tower, pixel-shuffle
    connector, Llama LM with 1-D RoPE.

    The processor resizes an image to a longest edge, splits it into ``max_image_size`` crops plus a global view
    and writes ``<fake_token_around_image>``, a ``<row_i_col_j>`` (or ``<global-img>``) tag and ``image_seq_len``
    image tokens per crop; ``pixel_values`` is ``(B, crops, 3, S, S)`` with ``pixel_attention_mask``
    ``(B, crops, S, S)``, both zero-padded on the crop axis in a batch (the model drops all-zero crops). All of
    that is the processor's and the model's; the prompt, positions and token tensors are generic. What is left
    here: pixel attacks, whose differentiable layout this package does not reproduce.
    """

    name = "idefics3"
    model_types = ("idefics3",)

    def resized_image_size(self, image_processor, height, width):
        raise NotImplementedError(_IDEFICS3_PIXELS)

    def pixel_inputs(self, image_processor, pixels):
        raise NotImplementedError(_IDEFICS3_PIXELS)


_IDEFICS3_PIXELS = (
    "Differentiable image preprocessing (pixel attacks such as PGD) is not implemented for the idefics3 family "
    "(Idefics3, SmolVLM): it needs the processor's image splitting in torch (a resize to size['longest_edge'] and "
    "to multiples of max_image_size, the grid of crops plus a resized global view, pixel_attention_mask) and a "
    "torch match for its LANCZOS resampling, which has none. Attack these models with text attacks (GCG) or with "
    "images perturbed outside the model."
)


def family_for(model_type: str) -> VLMFamily:
    """The family of a transformers ``model_type``; the generic family when none is registered."""
    return _REGISTRY.get(model_type, VLMFamily)()


def known_families() -> dict[str, type[VLMFamily]]:
    return dict(_REGISTRY)
