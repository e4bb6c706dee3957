"""Prompt tuning (the Safety Reminder paper's PT baseline), on peft.

The same number of trainable vectors as the reminder, trained on the same SAPT records, but placed once, before
the answer (after the prompt and the assistant header), and trained with the language-model loss alone: for a
harmful record the target is the refusal, for a benign one the model's own answer. At inference the vectors are
always there; there is no gate and no periodic injection. This is what the Safety Reminder adds over it.

peft supplies the parameters and the file format: :class:`PromptTuningObjective` builds a ``PromptTuningConfig``
and ``get_peft_model`` over the frozen VLM (peft freezes every base weight; the prompt encoder's embedding is the
only trainable tensor and *is* ``module.soft_prompt.weight``), and writes the result with ``save_pretrained``
(``adapter_config.json`` + ``adapter_model.safetensors``); :class:`PromptTuningDefence` reads it back with peft's
``PeftConfig.from_pretrained`` and ``load_peft_weights``. Where the vectors sit is ours, not peft's: peft's own
forward puts virtual tokens before the *whole* sequence (before the system prompt and the image) and, outside
``generate``, prepends them again on every cached decoding step; for Qwen2-VL it also hands the model embeddings
without the input ids its multimodal rotary positions are computed from. So training and decoding place the
vectors through the same placeholder tokens as the reminder (:class:`~reminder_lightning.reminder.injection.
ReminderInjector`), for every family, and decode through the same loop as every other defence.

Training: ``fit`` with ``model.objective`` this class and ``data.init_args.sapt.p_empty_prefix: 1.0`` (every
example is prompt + vectors + target: the vectors before the answer), no ``probe_path``; see
``configs/demo/fit_prompt_tuning.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PeftConfig, PeftType, PromptTuningConfig, TaskType, get_peft_model
from peft.utils import load_peft_weights

from reminder_lightning.defences.base import AttackSurface, DecodingSettings, Defence
from reminder_lightning.reminder.generation import ReminderGenerator, ReminderOutput
from reminder_lightning.reminder.injection import ReminderInjector
from reminder_lightning.reminder.soft_prompt import SoftPrompt
from reminder_lightning.training.objectives import SaptObjective
from reminder_lightning.vlm.adapter import PromptBuilder, VLMAdapter

#: The tensor peft stores a prompt-tuning adapter's vectors under.
PEFT_PROMPT_KEY = "prompt_embeddings"


class PromptTuningObjective(SaptObjective):
    """Prompt tuning: the LM loss on the targets with the vectors before the answer (SAPT's loss without a probe,
    which :meth:`setup` ensures); written as a peft adapter."""

    name = "prompt_tuning"
    default_export_name = "prompt_tuning"

    def __init__(self):
        self.peft_model = None

    def setup(self, module) -> None:
        if module.probe is not None:
            raise ValueError(
                f"Prompt tuning trains with the language-model loss alone, but model.probe_path="
                f"{module.hparams.probe_path!r} is set. Fix: remove probe_path from this config."
            )
        soft_prompt = module.soft_prompt
        text_config = getattr(module.vlm.inputs.config, "text_config", module.vlm.inputs.config)
        config = PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=soft_prompt.num_tokens,
            token_dim=soft_prompt.hidden_size,
            num_transformer_submodules=1,
            num_layers=text_config.num_hidden_layers,
            num_attention_heads=text_config.num_attention_heads,
        )
        self.peft_model = get_peft_model(module.vlm.model, config)
        # peft records the folder the weights came from; the model's name is what the defence checks against
        self.peft_model.peft_config["default"].base_model_name_or_path = module.vlm_spec.name_or_path
        embedding = self.peft_model.prompt_encoder["default"].embedding
        with torch.no_grad():  # peft's vectors start where the module's init put them (init_text, as SAPT)
            embedding.weight.copy_(soft_prompt.weight.to(embedding.weight))
        soft_prompt.weight = embedding.weight  # one tensor: the optimiser updates peft's parameter
        frozen = [n for n, p in module.vlm.model.named_parameters() if p.requires_grad]
        if frozen:
            raise RuntimeError(f"Prompt tuning must leave the VLM frozen; these weights would train: {frozen[:5]}")

    def on_fit_start(self, module) -> None:
        datamodule = getattr(module.trainer, "datamodule", None)
        sapt = getattr(datamodule, "sapt", None)
        if sapt is None or sapt.p_empty_prefix != 1.0:
            raise ValueError(
                "Prompt tuning places its vectors before the answer, so every training example must have an empty "
                f"answer prefix; data.sapt.p_empty_prefix is {getattr(sapt, 'p_empty_prefix', None)}. Fix: set "
                "data.init_args.sapt.p_empty_prefix: 1.0."
            )

    def export(self, module, path: Path) -> Path:
        path = Path(path)
        if path.suffix:
            raise ValueError(
                f"A peft adapter is a folder; export_path {path} looks like a file. Fix: drop the suffix."
            )
        self.peft_model.save_pretrained(str(path))
        return path


class _VectorsBeforeAnswer(PromptBuilder):
    """A prompt builder that ends every prompt with the vectors' placeholder tokens (after the assistant header)."""

    def __init__(self, inputs: PromptBuilder, placeholder_ids: list[int]):
        super().__init__(inputs.processor, inputs.config, inputs.spec, inputs.generation_eos)
        self.placeholder_ids = list(placeholder_ids)

    def encode_prompt(self, question: str, image=None) -> dict[str, torch.Tensor]:
        return self.append_tokens(super().encode_prompt(question, image), self.placeholder_ids)


def load_prompt_tuning(path: str | Path) -> tuple[PeftConfig, torch.Tensor]:
    """A prompt-tuning adapter written by :class:`PromptTuningObjective` (peft's format), validated."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{path}: no adapter_config.json. Fix: point adapter at the folder `fit` wrote with the prompt-tuning "
            "objective (model.export_path)."
        )
    config = PeftConfig.from_pretrained(str(path))
    if config.peft_type != PeftType.PROMPT_TUNING or config.num_transformer_submodules not in (None, 1):
        raise ValueError(
            f"{path}/adapter_config.json: peft_type {config.peft_type} with {config.num_transformer_submodules} "
            "submodules; this defence reads prompt-tuning adapters of one submodule."
        )
    weights = load_peft_weights(str(path), device="cpu")
    if PEFT_PROMPT_KEY not in weights:
        raise ValueError(f"{path}: the adapter has no {PEFT_PROMPT_KEY!r} tensor (has {sorted(weights)}).")
    vectors = weights[PEFT_PROMPT_KEY].float()
    if vectors.shape != (config.num_virtual_tokens, config.token_dim) or not torch.isfinite(vectors).all():
        raise ValueError(
            f"{path}: {PEFT_PROMPT_KEY} has shape {tuple(vectors.shape)} (config: {config.num_virtual_tokens} x "
            f"{config.token_dim}) or non-finite values: the adapter is damaged. Fix: train it again."
        )
    return config, vectors


class PromptTuningDefence(Defence):
    """The prompt-tuning baseline: trained vectors before every answer, no gate.

    Args:
        adapter: The peft adapter folder ``fit`` wrote with :class:`PromptTuningObjective` (or
            :class:`~reminder_lightning.defences.dro.DROObjective`: the same format, other vectors).
        name: The defence's name in outputs (``dro`` for a DRO adapter).
    """

    name = "prompt_tuning"

    def __init__(self, adapter: str, name: str = "prompt_tuning"):
        self.adapter = adapter
        self.name = name
        self.config: PeftConfig | None = None
        self.injector: ReminderInjector | None = None
        self.builder: PromptBuilder | None = None
        self.generator: ReminderGenerator | None = None

    def setup(self, adapter: VLMAdapter) -> None:
        config, vectors = load_prompt_tuning(self.adapter)
        model_name = adapter.inputs.spec.name_or_path
        if config.base_model_name_or_path != model_name:
            raise ValueError(
                f"{self.adapter}: trained on {config.base_model_name_or_path!r}, but the model here is {model_name!r}. "
                "Fix: evaluate it on the model it was trained on, or train it for this one."
            )
        if config.token_dim != adapter.hidden_size:
            raise ValueError(
                f"{self.adapter}: vectors of width {config.token_dim}, the model's hidden size is {adapter.hidden_size}."
            )
        soft_prompt = SoftPrompt(config.num_virtual_tokens, config.token_dim).to(adapter.device)
        with torch.no_grad():
            soft_prompt.weight.copy_(vectors)
        soft_prompt.requires_grad_(False)
        self.config = config
        self.injector = ReminderInjector(adapter.input_embeddings(), soft_prompt)
        self.builder = _VectorsBeforeAnswer(adapter.inputs, self.injector.placeholder_ids)
        self.generator = ReminderGenerator(VLMAdapter(adapter.model, self.builder), None)

    def generate(self, images, prompts, decoding: DecodingSettings) -> list[ReminderOutput]:
        if self.generator is None:
            raise RuntimeError("PromptTuningDefence: call setup(adapter) before generate().")
        with self.injector:
            return self.generator.generate(images, prompts, mode="never", **decoding.as_dict())

    def attack_surface(self) -> AttackSurface:
        """The trained vectors before the answer: what an attack that knows this defence optimises through."""
        if self.injector is None:
            raise RuntimeError("PromptTuningDefence: call setup(adapter) before attack_surface().")
        return AttackSurface(builder=self.builder, context=lambda: self.injector)

    def describe(self) -> dict:
        """Name, adapter folder and its peft config, read from the folder when :meth:`setup` has not run (a finished
        run that is resumed only to be judged again describes itself before any model is loaded)."""
        config = self.config if self.config is not None else load_prompt_tuning(self.adapter)[0]
        return {"name": self.name, "adapter": self.adapter,
                "peft_config": json.loads(json.dumps(config.to_dict(), default=str))}  # fmt: skip
