"""The model-facing half of GCG (:mod:`reminder_lightning.attacks.gcg`): the token layout of one prompt with
its suffix and target, the one-hot gradient through an input-embedding forward hook (image in the prompt), the
allowed tokens, candidate swaps with the round-trip filter, and exact candidate losses in batches."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from reminder_lightning.vlm.adapter import VLMAdapter
from reminder_lightning.vlm.collate import collate_encodings

_MARKER = "<<GCG-SUFFIX>>"


@dataclass
class SuffixLayout:
    """One prompt laid out as ``[prompt up to the question][suffix][rest of the template][target]``.

    Attributes:
        encoding: Batch-1 processor tensors for the whole sequence (image tensors included), on the CPU.
        start: Index of the first suffix token.
        length: Suffix tokens ``n``.
        target_ids: ``(T,)`` target token ids (the last ``T`` positions of ``encoding``).
        question: The question the suffix follows (the round-trip filter re-encodes it with the suffix).
    """

    encoding: dict[str, torch.Tensor]
    start: int
    length: int
    target_ids: torch.Tensor
    question: str

    def batch(self, suffixes: torch.Tensor, token_keys: list[str], pad_values: dict[str, int], device):
        """Model inputs for ``suffixes`` ``(B, n)``: the encoding repeated ``B`` times with the suffix swapped."""
        batch = collate_encodings([self.encoding] * suffixes.shape[0], token_keys, pad_values)
        batch["input_ids"][:, self.start : self.start + self.length] = suffixes.cpu()
        return {k: v.to(device) for k, v in batch.items()}


def suffix_hook(layout: SuffixLayout, embeds: torch.Tensor):
    """A forward hook for the input-embedding module that writes ``embeds`` ``(n, H)`` into the suffix rows."""
    start, end = layout.start, layout.start + layout.length

    def hook(module, args, output):
        output = output.clone()
        output[:, start:end] = embeds.to(output.dtype)
        return output

    return hook


def attacked_prompt(question: str, suffix: str) -> str:
    """The prompt the attacked model sees."""
    return f"{question} {suffix}"


class SuffixSearch:
    """The model-facing half of GCG: token layout, one-hot gradient, exact candidate losses.

    Args:
        adapter: The model (frozen, eval mode).
        eval_batch_size: Candidates per forward pass.
    """

    def __init__(self, adapter: VLMAdapter, eval_batch_size: int = 128):
        self.adapter, self.eval_batch_size = adapter, eval_batch_size
        self.inputs, self.tokenizer = adapter.inputs, adapter.tokenizer
        self.embedding = adapter.input_embeddings()
        self.rows = int(self.embedding.weight.shape[0])
        self._table: torch.Tensor | None = None
        self._allowed: torch.Tensor | None = None
        self._keep_logits = "logits_to_keep" in inspect.signature(adapter.model.forward).parameters

    # ------------------------------------------------------------------ layout
    def initial_suffix(self, token: str, length: int) -> torch.Tensor:
        """``length`` copies of the word-initial form of ``token`` (``" !"``): ``(n,)`` ids."""
        ids = self.inputs.encode_text(f" {token}")
        if len(ids) != 1:
            raise ValueError(f"GCGAttack.init_token {token!r} is {len(ids)} tokens after a space; use one token.")
        return torch.tensor(ids * length)

    def layout(self, question: str, image, suffix: torch.Tensor, target: str) -> SuffixLayout:
        """Split the chat prompt at the suffix: the part before is processed with the image, the rest appended."""
        head, after_ids = self.head(question, image)
        return self.assemble(head, after_ids, question, suffix, self.inputs.encode_text(target))

    def head(self, question: str, image) -> tuple[dict[str, torch.Tensor], list[int]]:
        """The processed chat prompt up to the suffix (image included) and the template's ids after it."""
        text = self.inputs.prompt_text(question + _MARKER, has_image=image is not None)
        if text.count(_MARKER) != 1:
            raise ValueError(
                f"The chat template of {self.inputs.spec.name_or_path} dropped or repeated the suffix."
            )
        before, after = text.split(_MARKER)
        bos = self.tokenizer.bos_token
        kwargs: dict[str, Any] = {"text": [before], "return_tensors": "pt"}
        kwargs["add_special_tokens"] = not (bos and before.startswith(bos))
        if image is not None:
            kwargs["images"] = [image]
        return dict(self.inputs.processor(**kwargs)), self.inputs.encode_text(after)

    def assemble(
        self, head: dict, after_ids: list[int], question: str, suffix: torch.Tensor, answer: list[int], target=None
    ) -> SuffixLayout:
        """``[head][suffix][after][answer]``; the scored target is the answer's last ``len(target)`` ids (default:
        the whole answer)."""
        target_ids = answer if target is None else target
        start = int(head["input_ids"].shape[1])
        encoding = self.inputs.append_tokens(head, suffix.tolist() + after_ids + list(answer))
        target = torch.tensor(target_ids, device=self.adapter.device)
        return SuffixLayout(encoding, start, int(suffix.shape[0]), target, question)

    def suffix_text(self, ids: torch.Tensor) -> str:
        """The suffix as text, without the separating space (``attacked_prompt`` adds it back)."""
        text = self.tokenizer.decode(ids.tolist())
        return text[1:] if text.startswith(" ") else text

    def retokenises(self, layout: SuffixLayout, image, ids: torch.Tensor) -> bool:
        """Whether the attacked prompt, encoded as the evaluation will encode it, gives the optimised ids."""
        prompt = attacked_prompt(layout.question, self.suffix_text(ids))
        encoded = self.inputs.encode_prompt(prompt, image)["input_ids"][0]
        optimised = layout.encoding["input_ids"][0, : -layout.target_ids.shape[0]].clone()
        optimised[layout.start : layout.start + layout.length] = ids.cpu()
        return encoded.shape == optimised.shape and bool((encoded == optimised).all())

    # ------------------------------------------------------------------ gradient
    def table(self) -> torch.Tensor:
        """``E`` ``(V, H)``: the embedding module's output for every id."""
        if self._table is None:
            with torch.no_grad():
                self._table = self.embedding(torch.arange(self.rows, device=self.adapter.device)).detach()
        return self._table

    def loss_with_embeds(self, layout: SuffixLayout, embeds: torch.Tensor) -> torch.Tensor:
        """Target cross-entropy with the suffix rows replaced by ``embeds`` ``(n, H)`` (differentiable)."""
        start, end = layout.start, layout.start + layout.length
        handle = self.embedding.register_forward_hook(suffix_hook(layout, embeds))
        try:
            ids = layout.encoding["input_ids"][0, start:end]
            logits = self._target_logits(layout, ids[None])
        finally:
            handle.remove()
        return F.cross_entropy(logits[0].float(), layout.target_ids)

    def token_gradient(self, layout: SuffixLayout, ids: torch.Tensor, normalise: bool = True) -> torch.Tensor:
        """``d loss / d one_hot(ids)`` ``(n, V)`` (rows scaled to unit norm unless ``normalise`` is False)."""
        table = self.table()
        one_hot = F.one_hot(ids.to(table.device), self.rows).to(table.dtype).requires_grad_(True)
        with torch.enable_grad():
            loss = self.loss_with_embeds(layout, one_hot @ table)
            (grad,) = torch.autograd.grad(loss, one_hot)
        grad = grad.float()
        return grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12) if normalise else grad

    # ------------------------------------------------------------------ candidates
    def allowed(self) -> torch.Tensor:
        """``(2, V)`` bool: row 0 for position 0 (word-initial tokens only), row 1 for the other positions."""
        if self._allowed is None:
            tok = self.tokenizer
            banned = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}))
            ok = torch.zeros(2, self.rows, dtype=torch.bool)
            for i in range(min(len(tok), self.rows)):
                text = tok.decode([i])
                if i in banned or not text.strip() or not (text.isascii() and text.isprintable()):
                    continue
                ok[1, i] = True
                ok[0, i] = tok.convert_ids_to_tokens(i).startswith(("\u0120", "\u2581", " "))
            if not ok[0].any():  # a tokenizer without word-initial markers: no position-0 rule
                ok[0] = ok[1]
            self._allowed = ok
        return self._allowed

    def candidates(
        self,
        layout: SuffixLayout,
        current: torch.Tensor,
        grad: torch.Tensor,
        topk: int,
        width: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Up to ``width`` distinct single-token swaps of ``current`` ``(n,)`` that round-trip: ``(B, n)``."""
        n = current.shape[0]
        allowed = self.allowed()
        mask = torch.cat([allowed[:1], allowed[1:].expand(n - 1, -1)])
        scores = (-grad.cpu()).masked_fill(~mask, float("-inf"))
        k = min(topk, int(mask.sum(dim=1).min()))
        top = scores.topk(k, dim=1).indices  # (n, k)
        positions = torch.randint(0, n, (width,), generator=generator)
        choice = torch.randint(0, k, (width,), generator=generator)
        cands = current.cpu().repeat(width, 1)
        cands[torch.arange(width), positions] = top[positions, choice]
        cands = torch.unique(cands, dim=0)
        return cands[self.round_trips(layout.question, cands)]

    def round_trips(self, question: str, suffixes: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: ``question + " " + suffix text`` encodes to the question's ids, then the suffix ids."""
        head = self.inputs.encode_text(question)
        texts = [attacked_prompt(question, self.suffix_text(ids)) for ids in suffixes]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return torch.tensor(
            [ids == head + c for ids, c in zip(encoded, suffixes.tolist(), strict=True)], dtype=torch.bool
        )

    @torch.no_grad()
    def losses(self, layout: SuffixLayout, suffixes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact target cross-entropy ``(B,)`` and whether the target is the greedy continuation ``(B,)``."""
        losses, hits = [], []
        for chunk in suffixes.split(self.eval_batch_size):
            logits = self._target_logits(layout, chunk).float()  # (b, T, V)
            target = layout.target_ids.expand(chunk.shape[0], -1)
            losses.append(F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(dim=1).cpu())
            hits.append((logits.argmax(dim=-1) == target).all(dim=1).cpu())
        return torch.cat(losses), torch.cat(hits)

    def _target_logits(self, layout: SuffixLayout, suffixes: torch.Tensor) -> torch.Tensor:
        """Logits that predict the target tokens: ``(B, T, V)``."""
        keys, pads = self.inputs.token_keys(layout.encoding), self.inputs.pad_values()
        batch = layout.batch(suffixes, keys, pads, self.adapter.device)
        size = layout.target_ids.shape[0]
        if self._keep_logits:
            batch["logits_to_keep"] = size + 1
        logits = self.adapter.model(**batch, use_cache=False).logits
        return logits[:, -(size + 1) : -1]
