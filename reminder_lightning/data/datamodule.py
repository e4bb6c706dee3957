"""HarmfulBenignDataModule: harmful and benign records mixed, cut into SAPT examples, batched.

Sampling is seeded and independent of the process layout: the example list is drawn once from
``seed``; each epoch's order comes from ``(seed, epoch)``; the prefix cut of example ``i`` in epoch
``e`` comes from ``(seed, e, i)``. So a resumed run sees exactly the batches an uninterrupted run would,
and a global batch split over DDP ranks is the same global batch one process would see.
"""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from reminder_lightning.data.records import Record, RecordError, load_image
from reminder_lightning.data.sapt import SaptSettings, encode_example, prefix_and_target
from reminder_lightning.data.sources import RecordSource
from reminder_lightning.reminder.schedule import ReminderSchedule
from reminder_lightning.vlm.adapter import PromptBuilder, VLMSpec
from reminder_lightning.vlm.collate import collate_encodings


class SaptDataset(Dataset):
    """Records -> tokenised SAPT examples. Indexed by ``(epoch, i)`` (see :class:`EpochSampler`) or ``i``."""

    def __init__(
        self,
        records: list[Record],
        builder: PromptBuilder,
        placeholder_ids: list[int],
        settings: SaptSettings,
        seed: int = 0,
        schedule: ReminderSchedule | None = None,
    ):
        self.records = records
        self.builder = builder
        self.placeholder_ids = placeholder_ids
        self.settings = settings
        self.seed = seed
        self.schedule = schedule or ReminderSchedule()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        record = self.records[index]
        rng = random.Random(f"{self.seed}:{epoch}:{index}")
        prefix, target = prefix_and_target(record, rng, self.settings, self.builder, self.schedule)
        image = load_image(record) if record.image is not None else None
        return encode_example(
            self.builder,
            self.placeholder_ids,
            record.question,
            image,
            prefix,
            target,
            record.is_safe,
            self.settings,
            record_id=f"{record.id} ({record.source})",
        )


class EpochSampler(DistributedSampler):
    """A ``DistributedSampler`` that yields ``(epoch, index)`` so datasets can seed per-epoch randomness.

    Being a ``DistributedSampler``, Lightning shards with it as it is and calls ``set_epoch`` on it.
    """

    def __iter__(self):
        epoch = self.epoch
        for index in super().__iter__():
            yield (epoch, index)


class SaptCollator:
    """Right-pads a list of encoded examples into one batch (labels padded with -100)."""

    def __init__(self, pad_values: dict[str, int]):
        self.pad_values = pad_values

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        keys: list[str] = []
        for item in items:
            keys += [k for k in PromptBuilder.token_keys(item) if k not in keys]
        return collate_encodings(items, keys, self.pad_values, padding_side="right")


def check_images(records: list[Record]) -> None:
    """Open every record's image before the first step (a broken or missing image fails now, naming its record,
    not hours into training), with a progress bar on large sets."""
    from tqdm.auto import tqdm

    with_images = [r for r in records if r.image is not None]
    bar = tqdm(with_images, desc="checking images", unit="img", disable=len(with_images) < 256, leave=False)
    for record in bar:
        image = load_image(record)
        if min(image.size) < 1:
            raise RecordError(f"{record.source}: record '{record.id}', field 'image': the image is empty.")


def check_prompt_lengths(records: list[Record], builder: PromptBuilder, num_tokens: int, max_length: int) -> None:
    """Encode every drawn record's prompt (image included) before the first step: prompt and image tokens are
    never cut, so a prompt that leaves no room for the reminder and an answer would fail mid-epoch, hours in."""
    from tqdm.auto import tqdm

    too_long = []
    bar = tqdm(records, desc="checking prompt lengths", unit="prompt", disable=len(records) < 256, leave=False)
    for record in bar:
        image = load_image(record) if record.image is not None else None
        length = int(builder.encode_prompt(record.question, image)["input_ids"].shape[1])
        if length + num_tokens >= max_length:
            too_long.append(f"'{record.id}' ({record.source}): {length} tokens")
    if too_long:
        raise RecordError(
            f"{len(too_long)} drawn record(s) leave no room for an answer within sapt.max_length={max_length} "
            f"(prompt and image tokens + {num_tokens} reminder tokens are never cut): {'; '.join(too_long[:5])}"
            f"{' ...' if len(too_long) > 5 else ''}. Fix: raise data.init_args.sapt.max_length, or shorten or drop "
            "those records. Nothing was trained."
        )


def mix_records(
    harmful: list[Record], benign: list[Record], num_examples: int | None, harmful_fraction: float, seed: int
) -> list[Record]:
    """Draw ``num_examples`` records, ``harmful_fraction`` of them harmful, seeded and shuffled.

    ``num_examples=None`` takes every record of both pools. A pool smaller than its share is used in
    whole shuffled rounds (each record at most once more than any other), with a warning.
    """
    rng = random.Random(seed)
    if num_examples is None:
        mixed = list(harmful) + list(benign)
        rng.shuffle(mixed)
        return mixed
    n_harmful = round(num_examples * harmful_fraction)
    picked = _draw(harmful, n_harmful, rng, "harmful") + _draw(benign, num_examples - n_harmful, rng, "benign")
    rng.shuffle(picked)
    return picked


def _draw(pool: list[Record], n: int, rng: random.Random, name: str) -> list[Record]:
    if n == 0:
        return []
    if not pool:
        raise ValueError(f"{n} {name} examples were requested but the {name} source gave no records.")
    if n > len(pool):
        rank_zero_warn(f"Only {len(pool)} {name} records for {n} {name} examples: records repeat.")
    out: list[Record] = []
    for _ in range(math.ceil(n / len(pool))):
        out += rng.sample(pool, len(pool))
    return out[:n]


class HarmfulBenignDataModule(L.LightningDataModule):
    """Harmful + benign records -> SAPT training (and optional validation) batches.

    Args:
        harmful: Source of harmful records (question, harmful answer, safe answer).
        benign: Source of benign records (question, helpful answer).
        num_examples: Training examples drawn per run (reference: 512). None: every record once.
        harmful_fraction: Share of harmful examples among them (reference: 0.5).
        val_fraction: Share of each pool held out for validation before drawing (0 = no validation).
        batch_size: Examples per batch and device (reference: 4).
        num_workers: DataLoader worker processes.
        seed: Seed of the draw, the epoch order and the prefix cuts.
        sapt: Example construction settings (prefix cut, max_length, truncation).
        vlm: The VLM whose processor tokenises the data (linked from ``model.vlm`` by the CLI).
        num_tokens: Reminder length (linked from ``model.num_tokens`` by the CLI).
        schedule: The reminder's schedule (linked from ``model.schedule`` by the CLI): ``sapt.cut:
            check_points`` cuts prefixes at its check points.
    """

    def __init__(
        self,
        harmful: RecordSource,
        benign: RecordSource,
        num_examples: int | None = 512,
        harmful_fraction: float = 0.5,
        val_fraction: float = 0.0,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
        sapt: SaptSettings | None = None,
        vlm: VLMSpec | None = None,
        num_tokens: int = 4,
        schedule: ReminderSchedule | None = None,
    ):
        super().__init__()
        if not 0.0 <= harmful_fraction <= 1.0:
            raise ValueError(f"harmful_fraction must be in [0, 1], got {harmful_fraction}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_examples is not None and (isinstance(num_examples, bool) or num_examples < 1):
            raise ValueError(
                f"num_examples must be >= 1 (or null for every record), got {num_examples!r}: "
                "a fit with no examples would train nothing."
            )
        self.harmful_source = harmful
        self.benign_source = benign
        self.num_examples = num_examples
        self.harmful_fraction = harmful_fraction
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.sapt = SaptSettings(**sapt) if isinstance(sapt, dict) else (sapt or SaptSettings())
        self.vlm = VLMSpec(**vlm) if isinstance(vlm, dict) else (vlm or VLMSpec())
        self.num_tokens = num_tokens
        self.schedule = (
            schedule if isinstance(schedule, ReminderSchedule) else ReminderSchedule(**(schedule or {}))
        )
        self.builder: PromptBuilder | None = None
        self.train_set: SaptDataset | None = None
        self.val_set: SaptDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.builder = PromptBuilder.load(self.vlm)
        placeholder_ids = self.builder.placeholder_ids(self.num_tokens)
        harmful, benign = self.harmful_source.load(), self.benign_source.load()
        for rec in harmful:
            if rec.is_safe:
                raise ValueError(
                    f"The harmful source gave a benign record {rec.id!r} ({rec.source}); check its kind."
                )
        for rec in benign:
            if not rec.is_safe:
                raise ValueError(
                    f"The benign source gave a harmful record {rec.id!r} ({rec.source}); check its kind."
                )
        check_images(harmful + benign)
        harmful_train, harmful_val = self._split(harmful, "harmful")
        benign_train, benign_val = self._split(benign, "benign")
        train = mix_records(harmful_train, benign_train, self.num_examples, self.harmful_fraction, self.seed)
        check_prompt_lengths(train + harmful_val + benign_val, self.builder, self.num_tokens, self.sapt.max_length)
        self.train_set = SaptDataset(train, self.builder, placeholder_ids, self.sapt, self.seed, self.schedule)
        if harmful_val or benign_val:
            val = harmful_val + benign_val
            self.val_set = SaptDataset(val, self.builder, placeholder_ids, self.sapt, self.seed + 1, self.schedule)

    def _split(self, records: list[Record], name: str) -> tuple[list[Record], list[Record]]:
        if self.val_fraction == 0:
            return list(records), []
        order = random.Random(f"{self.seed}:split:{name}").sample(records, len(records))
        n_val = max(1, round(len(order) * self.val_fraction))
        return order[n_val:], order[:n_val]

    def _loader(self, dataset: SaptDataset, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(dataset, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=SaptCollator(self.builder.pad_values()),
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> Any:
        self.setup("validate")
        if self.val_set is None:
            # no validation asked for (val_fraction 0): no batches, and not Lightning's "zero length" warning
            warnings.filterwarnings(
                "ignore", message="Total length of `list` across ranks is zero", category=UserWarning
            )
            return []
        return self._loader(self.val_set, shuffle=False)
