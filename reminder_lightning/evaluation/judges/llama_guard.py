"""Llama Guard 3 judges: text (``meta-llama/Llama-Guard-3-8B``) and vision (``meta-llama/Llama-Guard-3-11B-Vision``).

The prompt is the checkpoint's own chat template, fed the conversation ``user = question``,
``assistant = answer``: with an even number of turns the template asks about the last *Agent* message
(response classification). The model answers ``safe``, or ``unsafe`` and on the next line the violated
categories (``S1,S10``); :attr:`Verdict.raw` keeps that output. Llama Guard says nothing about refusals:
:attr:`Verdict.refusal` comes from the keyword judge.

The vision judge puts the image in the user turn (as in the model card's example); samples without an
image are judged text-only by the same model.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from reminder_lightning.evaluation.judges._generative import GenerativeJudge


def parse_llama_guard(output: str) -> tuple[bool | None, list[str]]:
    """``(unsafe, categories)`` from a Llama Guard output; ``(None, [])`` when the first line is neither label."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    label = lines[0].lower() if lines else ""
    if label == "safe":
        return False, []
    if label == "unsafe":
        cats = [c.strip() for c in lines[1].split(",") if c.strip()] if len(lines) > 1 else []
        return True, cats
    return None, []


class LlamaGuard3Judge(GenerativeJudge):
    """Llama Guard 3 (text) on (question, answer).

    Args:
        model: Hub id or local directory of a Llama Guard 3 text checkpoint.
        max_new_tokens: Enough for ``unsafe`` plus a category list.
        categories: Replace the hazard categories, e.g. ``{S1: "Violent Crimes."}`` (only checkpoints whose
            chat template takes ``categories`` support this; others raise an error on the first batch).
        excluded_categories: Category keys to drop from the policy, e.g. ``[S6]`` (same caveat).
        **kwargs: Device, dtype, batching, ...: see :class:`GenerativeJudge`.
    """

    name = "llama_guard_3"

    def __init__(
        self,
        model: str = "meta-llama/Llama-Guard-3-8B",
        max_new_tokens: int = 20,
        categories: dict[str, str] | None = None,
        excluded_categories: list[str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(model=model, max_new_tokens=max_new_tokens, **kwargs)
        self.categories = categories
        self.excluded_categories = excluded_categories

    def messages(self, question: str, answer: str, image: Any = None) -> list[dict]:
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    def _template_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.categories is not None:
            kwargs["categories"] = self.categories
        if self.excluded_categories is not None:
            kwargs["excluded_category_keys"] = self.excluded_categories
        return kwargs

    def build_prompts(self, questions: list[str], answers: list[str], images: list | None) -> list[str]:
        kwargs = self._template_kwargs()
        prompts = [
            self.processor.apply_chat_template(
                self.messages(q, a, None if images is None else images[i]), tokenize=False, **kwargs
            )
            for i, (q, a) in enumerate(zip(questions, answers, strict=True))
        ]
        self._check_policy(prompts[0])
        return prompts

    def _check_policy(self, prompt: str) -> None:
        """Fail when the chat template silently ignored ``categories`` / ``excluded_categories``."""
        for key, text in (self.categories or {}).items():
            if f"{key}: {text}" not in prompt:
                raise ValueError(
                    f"{type(self).__name__}: the chat template of {self.model_name} ignores `categories` "
                    f"({key!r} is not in the rendered prompt). Use a checkpoint whose template takes them "
                    "(Llama-Guard-3-1B, Llama-Guard-3-11B-Vision) or drop the argument."
                )
        for key in self.excluded_categories or []:
            if f"{key}: " in prompt:
                raise ValueError(
                    f"{type(self).__name__}: the chat template of {self.model_name} ignores `excluded_categories` "
                    f"({key!r} is still in the rendered prompt). Use a checkpoint whose template takes "
                    "`excluded_category_keys` or drop the argument."
                )

    @staticmethod
    def parse_output(output: str) -> bool | None:
        return parse_llama_guard(output)[0]


def as_pil(image: Any, where: str):
    """An RGB PIL image from a PIL image, a path or encoded bytes; None stays None."""
    from PIL import Image

    if image is None:
        return None
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, bytes):
        fp: Any = io.BytesIO(image)
    elif isinstance(image, str | Path):
        fp = Path(image)
        if not fp.is_file():
            raise FileNotFoundError(f"{where}: image file not found: {fp}. Fix the path or pass the image itself.")
    else:
        raise TypeError(f"{where}: expected a PIL image, a path or encoded bytes, got {type(image).__name__}.")
    with Image.open(fp) as img:
        img.load()
        return img.convert("RGB")


class LlamaGuard3VisionJudge(LlamaGuard3Judge):
    """Llama Guard 3 Vision on (image, question, answer).

    Args:
        model: Hub id or local directory of a Llama Guard 3 Vision checkpoint (Mllama).
        **kwargs: As :class:`LlamaGuard3Judge`.
    """

    name = "llama_guard_3_vision"

    def __init__(self, model: str = "meta-llama/Llama-Guard-3-11B-Vision", **kwargs: Any):
        super().__init__(model=model, **kwargs)

    def _load_model(self, path: str, **kwargs: Any):
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(path, **kwargs)

    def _load_processor(self, path: str, **kwargs: Any):
        from reminder_lightning.vlm.processors import load_processor

        return load_processor(path, **kwargs)

    def messages(self, question: str, answer: str, image: Any = None) -> list[dict]:
        user = [{"type": "text", "text": question}]
        if image is not None:
            user.append({"type": "image"})
        return [
            {"role": "user", "content": user},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]

    def _encode(self, prompts: list[str], images: list | None):
        if images is None or all(img is None for img in images):
            return super()._encode(prompts, None)
        pil = [[as_pil(img, f"{self.name}: image {i} of the batch")] for i, img in enumerate(images)]
        return dict(
            self.processor(text=prompts, images=pil, padding=True, return_tensors="pt", add_special_tokens=False)
        )

    def generate(self, prompts: list[str], images: list | None = None) -> list[str]:
        """Samples with and without an image go in separate batches (a batch is all-image or text-only)."""
        if images is None:
            return super().generate(prompts, None)
        with_image = [i for i, img in enumerate(images) if img is not None]
        text_only = [i for i, img in enumerate(images) if img is None]
        outputs: list[str] = [""] * len(prompts)
        if with_image:
            texts = super().generate([prompts[i] for i in with_image], [images[i] for i in with_image])
            for i, text in zip(with_image, texts, strict=True):
                outputs[i] = text
        if text_only:
            for i, text in zip(text_only, super().generate([prompts[i] for i in text_only], None), strict=True):
                outputs[i] = text
        return outputs
