"""GCG adversarial text suffix (Zou et al., 2023, "Universal and Transferable Adversarial Attacks on Aligned
Language Models"): one suffix of ``suffix_length`` tokens per prompt, optimised with the image in the prompt.

Why not ``nanogcg``: it builds ``inputs_embeds`` from the text alone and calls the model without
``pixel_values`` (image tokens are never merged, Qwen2-VL's multimodal positions are never computed), and it
pins ``transformers<=4.47.1`` against our ``>=5``. Here the model's stock ``forward`` runs on ``input_ids`` plus
the processor's image tensors, and a forward hook on the input embedding module swaps in the suffix rows.

One step, for a suffix ``x`` (``n`` token ids) and a target ``t`` (the answer prefix the attack wants):

1. the gradient of the target cross-entropy with respect to the one-hot suffix ``(n, V)``: the hook writes
   ``one_hot @ E`` into the suffix rows, where ``E`` ``(V, H)`` is the embedding module's own output for every
   id (so scaled embeddings, Gemma 3, are right);
2. the ``topk`` most negative gradient entries per position among the allowed tokens (printable ASCII, no
   special or added tokens; position 0 must start a word, so ``question + " " + suffix`` re-tokenises alike);
3. ``search_width`` candidates, each ``x`` with one random position set to one of its top-k tokens;
4. candidates whose text does not round-trip are dropped (``question + " " + decode(suffix)`` must re-encode
   to the question's ids followed by the suffix ids, so the evaluated prompt carries the optimised tokens);
   the rest are scored exactly in batches of ``eval_batch_size``;
5. the best candidate becomes ``x`` (as in GCG, even if worse than ``x``); the best suffix ever seen,
   the initial one included, is what is kept, so its loss never exceeds the initial loss.

The search stops early when the target is the greedy continuation (teacher-forced argmax at every target
position). Suffixes are appended to ``<output_dir>/gcg_suffixes.jsonl`` as they are found; a rerun skips
every prompt already there with the same question, target and search settings, and (``resume``) continues a prompt
searched for fewer steps from its stored state (the current suffix and the candidate generator), so a run of 10
steps resumed to 20 is the run of 20 steps, and a budget curve costs one search to its largest budget.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from reminder_lightning.attacks.base import Attack
from reminder_lightning.attacks.gcg_search import SuffixSearch, attacked_prompt
from reminder_lightning.evaluation.store import JsonlAppender, read_jsonl, sample_key
from reminder_lightning.types import EvalSample
from reminder_lightning.vlm.adapter import VLMAdapter, VLMSpec

SUFFIX_FILE = "gcg_suffixes.jsonl"
__all__ = ["SUFFIX_FILE", "GCGAttack", "SuffixSearch", "attacked_prompt"]


class GCGAttack(Attack):
    """Greedy Coordinate Gradient suffix per prompt (see the module docstring for one step).

    Args:
        vlm: The VLM to attack (loaded on first :meth:`fit`); not needed after :meth:`set_model`.
        device: Device for a model this attack loads (None: ``cuda`` when available, else ``cpu``).
        num_steps: Optimisation steps per prompt (GCG: 500; nanogcg: 250).
        search_width: Candidate suffixes per step.
        topk: Tokens per position the candidates are drawn from.
        suffix_length: Suffix tokens ``n``.
        eval_batch_size: Candidates per forward pass when scoring (memory: ``eval_batch_size`` full sequences).
        seed: Seed of the candidate draws (per prompt: ``seed`` and the sample's key, so order does not matter).
        target: Target answer prefix when a sample has no ``meta["target"]`` (AdvBench samples have one).
        init_token: The suffix starts as this token repeated (GCG: ``!``).
        early_stop: Stop a prompt once the target is the greedy continuation.
        use_image: Keep the sample's image in the prompt (False: a text-only attack; :meth:`apply` then drops
            the image too).
        resume: Continue a prompt the suffix file holds with fewer steps (same question, target and settings)
            from its stored state instead of searching it again from the start.
    """

    name = "gcg"
    budget_resumes = "num_steps"  # robustness: one resumed search goes through a curve of num_steps values

    def __init__(
        self,
        vlm: VLMSpec | None = None,
        device: str | None = None,
        num_steps: int = 250,
        search_width: int = 512,
        topk: int = 256,
        suffix_length: int = 20,
        eval_batch_size: int = 128,
        seed: int = 0,
        target: str = "Sure, here is",
        init_token: str = "!",
        early_stop: bool = True,
        use_image: bool = True,
        resume: bool = True,
    ):
        if min(search_width, topk, suffix_length, eval_batch_size) < 1 or num_steps < 0:
            raise ValueError("search_width, topk, suffix_length and eval_batch_size must be >= 1, num_steps >= 0")
        if not target.strip():
            raise ValueError("GCGAttack.target must be a non-empty answer prefix such as 'Sure, here is'")
        self.vlm, self.device = vlm, device
        self.num_steps, self.search_width, self.topk = num_steps, search_width, topk
        self.suffix_length, self.eval_batch_size, self.seed = suffix_length, eval_batch_size, seed
        self.target, self.init_token, self.early_stop, self.use_image = target, init_token, early_stop, use_image
        self.resume = resume
        self.adapter: VLMAdapter | None = None
        self._search: SuffixSearch | None = None
        self.steps_run = 0  # optimisation steps done by this object (resume tests count them)

    # ------------------------------------------------------------------ Attack API
    def set_model(self, adapter: VLMAdapter) -> None:
        """Attack an already loaded (frozen, eval-mode) model instead of loading ``vlm``."""
        self.adapter = adapter

    def fit(self, samples: list[EvalSample], output_dir: Path) -> None:
        """Find a suffix for every sample not yet in ``<output_dir>/gcg_suffixes.jsonl``, appending as it goes."""
        path = Path(output_dir) / SUFFIX_FILE
        known = latest_rows(path)
        todo = [s for s in samples if not self._is_done(known.get(sample_key(s.benchmark, s.id)), s)]
        if not todo:
            return
        adapter = self._model()
        with JsonlAppender(path) as out, tqdm(total=len(todo), desc="GCG prompts", unit="prompt") as bar:
            for sample in todo:
                previous = known.get(sample_key(sample.benchmark, sample.id))
                row = self.optimise(adapter, sample, previous if self._resumes(previous, sample) else None)
                out.write(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", success=row["success"])

    def apply(self, samples: list[EvalSample], output_dir: Path) -> list[EvalSample]:
        path = Path(output_dir) / SUFFIX_FILE
        known = latest_rows(path)
        out = []
        for s in samples:
            row = known.get(sample_key(s.benchmark, s.id))
            if not self._is_done(row, s):
                raise ValueError(
                    f"{path}: no GCG suffix for {s.benchmark}/{s.id} with this question, target, settings and "
                    f"num_steps {self.num_steps}; run GCGAttack.fit first (python -m reminder_lightning attack "
                    "does both)."
                )
            meta = {**s.meta, "attack": self.name, "suffix": row["suffix"], "gcg_loss": row["loss"]}
            out.append(
                replace(
                    s,
                    benchmark=f"{s.benchmark}+{self.name}",
                    prompt=attacked_prompt(s.prompt, row["suffix"]),
                    image=s.image if self.use_image else None,  # evaluate the prompt the suffix was made for
                    meta={**meta, "gcg_success": row["success"]},
                )
            )
        return out

    # ------------------------------------------------------------------ search
    def target_for(self, sample: EvalSample) -> str:
        return sample.meta.get("target") or self.target

    def optimise(
        self, adapter: VLMAdapter, sample: EvalSample, previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run GCG on one sample (from ``previous``'s stored state, a row of fewer steps); returns its JSONL row."""
        if self._search is None or self._search.adapter is not adapter:  # embedding table, allowed tokens: once
            self._search = SuffixSearch(adapter, self.eval_batch_size)
        search = self._search
        image = self._image(sample)
        generator = torch.Generator().manual_seed(
            self.seed + zlib.crc32(sample_key(sample.benchmark, sample.id).encode())
        )
        if previous is None:
            current = search.initial_suffix(self.init_token, self.suffix_length)
            layout = search.layout(sample.prompt, image, current, self.target_for(sample))
            losses, hits = search.losses(layout, current[None])
            init_loss = best_loss = float(losses[0])
            best, success, steps = current, bool(hits[0]), 0
        else:
            state = previous["state"]
            current, best = torch.tensor(state["current_ids"]), torch.tensor(previous["suffix_ids"])
            layout = search.layout(sample.prompt, image, current, self.target_for(sample))
            generator.set_state(
                torch.frombuffer(bytearray(base64.b64decode(state["generator"])), dtype=torch.uint8)
            )
            init_loss, best_loss, success, steps = (
                previous["init_loss"],
                previous["loss"],
                previous["success"],
                previous["steps"],
            )
        start = steps
        bar = tqdm(total=self.num_steps, initial=steps, desc="GCG steps", unit="step", leave=False)
        while steps < self.num_steps and not (success and self.early_stop):
            grad = search.token_gradient(layout, current)
            candidates = search.candidates(layout, current, grad, self.topk, self.search_width, generator)
            steps += 1
            bar.update(1)
            if candidates.shape[0] == 0:
                continue
            losses, hits = search.losses(layout, candidates)
            i = int(losses.argmin())
            current = candidates[i]
            if float(losses[i]) < best_loss:
                best, best_loss, success = current, float(losses[i]), bool(hits[i])
            bar.set_postfix(best_loss=f"{best_loss:.3f}", success=success)
        bar.close()
        self.steps_run += steps - start
        suffix = search.suffix_text(best)
        exact = search.retokenises(layout, image, best)
        return {
            "key": sample_key(sample.benchmark, sample.id),
            "id": sample.id,
            "benchmark": sample.benchmark,
            "question": sample.prompt,
            "target": self.target_for(sample),
            "suffix": suffix,
            "suffix_ids": best.tolist(),
            "loss": best_loss,
            "init_loss": init_loss,
            "steps": steps,
            "success": success,
            "exact_retokenisation": exact,
            "settings": self._settings(),
            "state": {  # where a longer search continues from
                "current_ids": current.tolist(),
                "generator": base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii"),
            },
        }

    # ------------------------------------------------------------------ helpers
    def _settings(self) -> dict[str, Any]:
        """The search settings a row was made with (besides ``num_steps``)."""
        keys = ("search_width", "topk", "suffix_length", "seed", "init_token", "early_stop", "use_image")
        return {k: getattr(self, k) for k in keys}

    def _same_search(self, row: dict[str, Any] | None, sample: EvalSample) -> bool:
        return (
            row is not None
            and row["question"] == sample.prompt
            and row["target"] == self.target_for(sample)
            and row.get("settings") == self._settings()
        )

    def _is_done(self, row: dict[str, Any] | None, sample: EvalSample) -> bool:
        """The row is this search of exactly ``num_steps`` steps (or one that stopped early on success)."""
        if not self._same_search(row, sample):
            return False
        stopped = row["success"] and self.early_stop and row["steps"] <= self.num_steps
        return row["steps"] == self.num_steps or stopped

    def _resumes(self, row: dict[str, Any] | None, sample: EvalSample) -> bool:
        """The row is this search cut short (fewer steps, not stopped on success): continue it."""
        return (
            self.resume
            and self._same_search(row, sample)
            and "state" in row
            and row["steps"] < self.num_steps
            and not (row["success"] and self.early_stop)
        )

    def _image(self, sample: EvalSample):
        if not self.use_image or sample.image is None:
            return None
        from reminder_lightning.data.records import decode_image

        return decode_image(sample.image, sample.benchmark, sample.id)

    def _model(self) -> VLMAdapter:
        if self.adapter is None:
            if self.vlm is None:
                raise ValueError(
                    "GCGAttack needs `vlm` (a VLMSpec: attack.init_args.vlm.name_or_path) or set_model()."
                )
            spec = self.vlm if isinstance(self.vlm, VLMSpec) else VLMSpec(**self.vlm)
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.adapter = VLMAdapter.load(spec, device=device)
            self.adapter.requires_grad_(False)
        return self.adapter


def latest_rows(path: Path) -> dict[str, dict[str, Any]]:
    """``{key: row}`` from the suffix file; a later row for a key wins."""
    return {row["key"]: row for row in read_jsonl(path)}
