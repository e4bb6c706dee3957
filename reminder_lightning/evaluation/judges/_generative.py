"""GenerativeJudge: the shared machinery of judges that are language models.

Llama Guard, MD-Judge, the HarmBench classifier and any prompted LLM differ only in how they write the
prompt and how they read the answer. Everything else lives here, once: load the model and tokenizer
(lazily, on the first batch, so building a judge from YAML costs nothing), render prompts, batch them
with left padding, decode greedily, strip the prompt, and take the refusal signal from the
:class:`~reminder_lightning.evaluation.judges.keyword.KeywordJudge` (none of these models is trained
to say whether an answer refuses).
"""

from __future__ import annotations

import copy
import re
from abc import abstractmethod
from typing import Any

import torch

from reminder_lightning.evaluation.judges.base import Judge
from reminder_lightning.evaluation.judges.keyword import KeywordJudge
from reminder_lightning.types import Verdict

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_FIELD = re.compile(r"\{(\w+)\}")


def fill_template(template: str, **fields: str) -> str:
    """Replace ``{name}`` fields in one pass; other braces stay, and inserted text is never re-read.

    Unlike ``str.format`` it accepts templates with literal braces (JSON examples) and answers that
    contain ``{question}``.
    """
    return _FIELD.sub(lambda m: fields[m.group(1)] if m.group(1) in fields else m.group(0), template)


class GenerativeJudge(Judge):
    """A judge that is a generative model: subclasses say how to prompt it and how to read its output.

    Args:
        model: Hub id or local directory of the judge model.
        device: Where the judge runs (``cuda:1``, ``cpu``; may differ from the defended model's).
            ``auto`` spreads it over all visible GPUs (``device_map="auto"``, needs ``accelerate``).
            None: ``cuda`` if available, else ``cpu``.
        dtype: Weight dtype: ``auto`` (the checkpoint's), ``bfloat16``, ``float16`` or ``float32``.
        batch_size: Prompts per forward pass.
        max_new_tokens: Tokens the judge may generate (greedy decoding).
        trust_remote_code: Run code shipped with the checkpoint. Off unless you trust the repository.
        revision: Hub revision (branch, tag or commit) of the judge, for reproducible numbers.
        refusal_prefix_chars: Window of the keyword refusal check (see ``KeywordJudge.prefix_chars``).
    """

    def __init__(
        self,
        model: str,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 16,
        trust_remote_code: bool = False,
        revision: str | None = None,
        refusal_prefix_chars: int | None = 200,
    ):
        if dtype != "auto" and dtype not in DTYPES:
            raise ValueError(
                f"{type(self).__name__}: unknown dtype {dtype!r}; use auto, {', '.join(sorted(DTYPES))}."
            )
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be >= 1, got {batch_size}.")
        if max_new_tokens < 1:
            raise ValueError(f"{type(self).__name__}: max_new_tokens must be >= 1, got {max_new_tokens}.")
        self.model_name = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self.refusal_judge = KeywordJudge(prefix_chars=refusal_prefix_chars)
        self.model: torch.nn.Module | None = None
        self.processor: Any = None

    # ------------------------------------------------------------------ what a subclass defines
    @abstractmethod
    def build_prompts(self, questions: list[str], answers: list[str], images: list | None) -> list[str]:
        """The full judge prompts (special tokens included where a chat template writes them)."""

    @abstractmethod
    def parse_output(self, output: str) -> bool | None:
        """True (unsafe), False (safe) or None (unparseable) from the judge's decoded output."""

    def make_verdict(self, output: str, refusal: bool) -> Verdict:
        """The verdict for one decoded output; ``refusal`` is the keyword judge's."""
        return Verdict(unsafe=self.parse_output(output), refusal=refusal, raw=output.strip())

    def _load_model(self, path: str, **kwargs: Any) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, **kwargs)

    def _load_processor(self, path: str, **kwargs: Any) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, **kwargs)

    # ------------------------------------------------------------------ loading
    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def load(self) -> None:
        """Load model and tokenizer (done by the first :meth:`judge` call; call it to load earlier)."""
        if self.model is not None:
            return
        common: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.revision:
            common["revision"] = self.revision
        self.processor = self._load_processor(self.model_name, **common)
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:  # inference only: padding is masked, any id will do
            if tok.eos_token is None:
                raise ValueError(
                    f"{type(self).__name__}: the tokenizer of {self.model_name} has neither a pad nor an EOS token; "
                    "set `pad_token` in its tokenizer_config.json."
                )
            tok.pad_token = tok.eos_token
        kwargs = dict(common, dtype=DTYPES.get(self.dtype, "auto"))
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "auto":
            kwargs["device_map"] = "auto"
        model = self._load_model(self.model_name, **kwargs)
        if device != "auto":
            model.to(device)
        self.model = model.eval().requires_grad_(False)

    # ------------------------------------------------------------------ generation
    def _encode(self, prompts: list[str], images: list | None) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        # A chat template that writes BOS itself must not get a second one from the tokenizer.
        add_special = not (tok.bos_token and prompts[0].lstrip().startswith(tok.bos_token))
        return dict(tok(prompts, padding=True, return_tensors="pt", add_special_tokens=add_special))

    @torch.no_grad()
    def _greedy(self, encoded: dict[str, torch.Tensor]) -> list[str]:
        model = self.model
        device, dtype = model.device, model.dtype
        inputs = {
            k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
            for k, v in encoded.items()
        }
        config = copy.deepcopy(model.generation_config)
        config.do_sample, config.num_beams = False, 1
        config.temperature = config.top_p = config.top_k = None
        config.max_new_tokens = self.max_new_tokens
        config.pad_token_id = self.tokenizer.pad_token_id
        out = model.generate(**inputs, generation_config=config)
        return self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def generate(self, prompts: list[str], images: list | None = None) -> list[str]:
        """Greedy judge outputs (prompt stripped, special tokens dropped), one per prompt, in order."""
        self.load()
        outputs: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk_images = None if images is None else images[start : start + self.batch_size]
            outputs += self._greedy(self._encode(prompts[start : start + self.batch_size], chunk_images))
        return outputs

    def judge(self, questions: list[str], answers: list[str], images: list | None = None) -> list[Verdict]:
        if len(questions) != len(answers):
            raise ValueError(f"{type(self).__name__}: got {len(questions)} questions but {len(answers)} answers.")
        if images is not None and len(images) != len(questions):
            raise ValueError(
                f"{type(self).__name__}: got {len(images)} images for {len(questions)} questions; "
                "pass None for a text-only sample."
            )
        if not questions:
            return []
        self.load()
        outputs = self.generate(self.build_prompts(questions, answers, images), images)
        refusals = self.refusal_judge.judge(questions, answers)
        return [self.make_verdict(out, r.refusal) for out, r in zip(outputs, refusals, strict=True)]
