"""VLMAdapter: the one object that knows how to load a VLM and turn (image, question) into model inputs.

Loading goes through ``AutoModelForImageTextToText`` and ``AutoProcessor`` for any hub id or local
path (``tiny:<family>`` builds a tiny random model offline, see :mod:`reminder_lightning.vlm.tiny`).
Prompts are rendered by the processor's own chat template, so the tokens match what the model saw in
instruction tuning. Text that follows the prompt (an assistant prefix, reminder placeholders, a
target) is appended as token ids, and every per-token tensor the processor returned is extended to
match, which keeps image tokens and Qwen2-VL's multimodal positions intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reminder_lightning.vlm.families import VLMFamily, family_for, require_supported
from reminder_lightning.vlm.processors import load_processor

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass
class VLMSpec:
    """Which VLM to load and how.

    Args:
        name_or_path: Hub id (``llava-hf/llava-1.5-7b-hf``), local directory, ``tiny:<family>`` for a tiny
            random model built offline (``tiny:llava``, ``tiny:llava_next``, ``tiny:qwen2_vl``, ``tiny:qwen2_5_vl``,
            ``tiny:gemma3``, ``tiny:idefics3``), or ``shapes:llava-1.5-7b`` / ``shapes:qwen2-vl-7b`` for random
            weights of the real shapes (GPU checks).
        dtype: Weight dtype: ``auto`` (the checkpoint's), ``float32``, ``bfloat16`` or ``float16``.
        attn_implementation: ``sdpa``, ``eager``, ``flash_attention_2`` or None for the transformers default.
        trust_remote_code: Run code shipped with the checkpoint. Off unless you trust the repository.
        revision: Hub revision (branch, tag or commit) for reproducible runs.
        processor_kwargs: Extra ``AutoProcessor.from_pretrained`` arguments, e.g. ``{min_pixels: 200704,
            max_pixels: 1003520}`` for Qwen2-VL.
        system_prompt: Optional system message placed before every user turn.
    """

    name_or_path: str = "tiny:llava"
    dtype: str = "auto"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None

    def torch_dtype(self) -> torch.dtype | str:
        if self.dtype == "auto":
            return "auto"
        if self.dtype not in _DTYPES:
            raise ValueError(f"Unknown dtype {self.dtype!r}; use one of auto, {', '.join(sorted(_DTYPES))}.")
        return _DTYPES[self.dtype]


def resolve_model_path(name_or_path: str) -> str:
    """Map ``tiny:<family>`` / ``demo:smollm2-llava`` to a local directory (built on first use); pass others through."""
    from reminder_lightning.vlm.tiny import TINY_PREFIX, ensure_tiny_model

    if name_or_path.startswith(TINY_PREFIX):
        return str(ensure_tiny_model(name_or_path[len(TINY_PREFIX) :]))
    if name_or_path.startswith("shapes:"):
        from reminder_lightning.vlm.shapes import ensure_shapes_model

        return str(ensure_shapes_model(name_or_path[len("shapes:") :]))
    if name_or_path.startswith("demo:"):
        from reminder_lightning.vlm.demo import ensure_demo_model

        return str(ensure_demo_model(name_or_path[len("demo:") :]))
    looks_local = name_or_path.startswith(("/", "./", "../", "~")) or name_or_path.count("/") > 1
    if looks_local and not Path(name_or_path).expanduser().exists():
        raise FileNotFoundError(
            f"vlm.name_or_path: no model folder at {name_or_path} (a local path: it is not a hub id of the form "
            "'org/name'). Fix: correct the path, or give the hub id."
        )
    return name_or_path


class PromptBuilder:
    """Turns (image or None, question) and appended text into model inputs; needs no weights.

    Data pipelines use it on their own (``PromptBuilder.load(spec)`` reads only the processor and the
    config), the :class:`VLMAdapter` carries one next to the model.

    Args:
        processor: The model's processor (tokenizer + image processor + chat template).
        config: The model's ``PretrainedConfig``.
        spec: The :class:`VLMSpec` it came from (system prompt, name).
        generation_eos: ``generation_config.eos_token_id`` if the checkpoint has one.
    """

    def __init__(self, processor: Any, config: Any, spec: VLMSpec, generation_eos: int | list[int] | None = None):
        self.processor = processor
        self.config = config
        self.spec = spec
        self.family: VLMFamily = family_for(config.model_type)
        self.generation_eos = generation_eos
        require_supported(self.family, config, processor, spec.name_or_path)
        if self.tokenizer.pad_token_id is None:
            raise ValueError(
                f"The tokenizer of {spec.name_or_path} has no pad token; set `tokenizer.pad_token` (e.g. to the EOS "
                "token) in the checkpoint's tokenizer_config.json."
            )

    @classmethod
    def load(cls, spec: VLMSpec) -> PromptBuilder:
        from transformers import AutoConfig, GenerationConfig

        path = resolve_model_path(spec.name_or_path)
        common: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
        if spec.revision:
            common["revision"] = spec.revision
        config = AutoConfig.from_pretrained(path, **common)
        processor = load_processor(path, **common, **spec.processor_kwargs)
        try:
            generation_eos = GenerationConfig.from_pretrained(path, **common).eos_token_id
        except OSError:  # the checkpoint ships no generation_config.json: fall back to the tokenizer's EOS
            generation_eos = None
        return cls(processor, config, spec, generation_eos)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def text_config(self):
        return self.config.get_text_config()

    @property
    def vocab_size(self) -> int:
        """Rows of the input embedding table; ids at or above it are free for reminder placeholders."""
        return int(self.text_config.vocab_size)

    @property
    def image_token_ids(self) -> set[int]:
        ids = {getattr(self.config, k, None) for k in ("image_token_id", "image_token_index", "video_token_id")}
        return {int(i) for i in ids if i is not None}

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def placeholder_ids(self, num_tokens: int) -> list[int]:
        """The ids that mark reminder positions (see :mod:`reminder_lightning.reminder.injection`)."""
        return [self.vocab_size + i for i in range(num_tokens)]

    def end_of_answer_ids(self) -> list[int]:
        return self.family.end_of_answer_ids(self.tokenizer, self.generation_eos)

    def prompt_text(self, question: str, has_image: bool) -> str:
        """The chat-template rendering of one user turn followed by the assistant generation prompt."""
        messages = self.family.messages(question, has_image, self.spec.system_prompt)
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode_prompt(self, question: str, image=None) -> dict[str, torch.Tensor]:
        """Processor outputs for one (image or None, question) prompt, batch dimension 1.

        A BOS token is added by the tokenizer only when the chat template did not already write it.
        """
        text = self.prompt_text(question, has_image=image is not None)
        bos = self.tokenizer.bos_token
        add_special = not (bos and text.startswith(bos))
        kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt", "add_special_tokens": add_special}
        if image is not None:
            kwargs["images"] = [image]
        return dict(self.processor(**kwargs))

    def encode_text(self, text: str) -> list[int]:
        """Token ids of a piece of assistant text, without special tokens."""
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @staticmethod
    def token_keys(encoded: dict[str, torch.Tensor]) -> list[str]:
        """Keys of the per-token tensors in a batch-1 encoding (same shape as ``input_ids``)."""
        shape = encoded["input_ids"].shape
        return [k for k, v in encoded.items() if torch.is_tensor(v) and v.shape == shape]

    def append_tokens(self, encoded: dict[str, torch.Tensor], ids: list[int]) -> dict[str, torch.Tensor]:
        """Append token ids to a batch-1 encoding, extending every per-token tensor."""
        out = dict(encoded)
        if not ids:
            return out
        for key in self.token_keys(encoded):
            tensor = encoded[key]
            if key == "input_ids":
                extra = torch.tensor([ids], dtype=tensor.dtype)
            else:
                extra = torch.full((1, len(ids)), self.family.fill_value(key), dtype=tensor.dtype)
            out[key] = torch.cat([tensor, extra], dim=1)
        return out

    def pad_values(self) -> dict[str, int]:
        return {"input_ids": self.pad_token_id, "labels": -100, "attention_mask": 0}


class VLMAdapter(nn.Module):
    """A VLM plus its :class:`PromptBuilder`.

    Attributes:
        model: the ``transformers`` model (a submodule, so Lightning places and shards it).
        inputs: the :class:`PromptBuilder` for this model.
    """

    def __init__(self, model: nn.Module, inputs: PromptBuilder):
        super().__init__()
        self.model = model
        self.inputs = inputs
        require_supported(inputs.family, inputs.config, inputs.processor, inputs.spec.name_or_path, model)
        rows = int(model.get_input_embeddings().weight.shape[0])
        if rows != inputs.vocab_size:
            raise ValueError(
                f"{inputs.spec.name_or_path}: the input embedding has {rows} rows but the config says vocab_size="
                f"{inputs.vocab_size}; reminder placeholder ids would collide. Fix the config's text vocab_size."
            )

    @classmethod
    def load(cls, spec: VLMSpec, device: torch.device | str | None = None) -> VLMAdapter:
        """Load model and processor as ``spec`` says. The model is returned in eval mode."""
        from transformers import AutoModelForImageTextToText

        inputs = PromptBuilder.load(spec)
        kwargs: dict[str, Any] = {"dtype": spec.torch_dtype(), "trust_remote_code": spec.trust_remote_code}
        if spec.attn_implementation:
            kwargs["attn_implementation"] = spec.attn_implementation
        if spec.revision:
            kwargs["revision"] = spec.revision
        path = resolve_model_path(spec.name_or_path)
        from reminder_lightning.vlm.shapes import build_random, is_random_weights

        if is_random_weights(path):  # shapes:<model>: the real architecture, random weights, nothing downloaded
            model = build_random(path, kwargs["dtype"], device)
        else:
            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        if device is not None:
            model.to(device)
        model.eval()
        return cls(model, inputs)

    @classmethod
    def wrap(cls, model: nn.Module, processor: Any, spec: VLMSpec | None = None) -> VLMAdapter:
        """Adapt an already loaded ``transformers`` model and its processor."""
        if isinstance(model, VLMAdapter):
            return model
        if processor is None:
            raise ValueError("VLMAdapter.wrap needs the model's processor (AutoProcessor.from_pretrained(...)).")
        name = getattr(model.config, "_name_or_path", "") or model.config.model_type
        generation = getattr(model, "generation_config", None)
        builder = PromptBuilder(
            processor, model.config, spec or VLMSpec(name_or_path=name), getattr(generation, "eos_token_id", None)
        )
        return cls(model, builder)

    @property
    def processor(self):
        return self.inputs.processor

    @property
    def tokenizer(self):
        return self.inputs.tokenizer

    @property
    def family(self) -> VLMFamily:
        return self.inputs.family

    @property
    def hidden_size(self) -> int:
        return int(self.inputs.text_config.hidden_size)

    @property
    def num_hidden_states(self) -> int:
        """Entries of the language model's ``hidden_states`` (the embeddings plus one per layer)."""
        return int(self.inputs.text_config.num_hidden_layers) + 1

    def input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    @property
    def dtype(self) -> torch.dtype:
        return self.input_embeddings().weight.dtype

    @property
    def device(self) -> torch.device:
        return self.input_embeddings().weight.device

    def forward(self, **inputs):
        return self.model(**inputs)
