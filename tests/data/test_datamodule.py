from collections import Counter

import pytest
import torch

from reminder_lightning.data.datamodule import EpochSampler, HarmfulBenignDataModule, SaptDataset, mix_records
from reminder_lightning.data.records import Record
from reminder_lightning.data.sapt import SaptSettings
from reminder_lightning.data.sources import LocalRecords
from reminder_lightning.vlm.adapter import VLMSpec
from tests.training.helpers import REPO


def _records(n, is_safe):
    kind = "b" if is_safe else "h"
    return [
        Record(
            f"{kind}{i}",
            f"question {i}",
            "An answer that is long enough to be cut somewhere.",
            is_safe,
            None if is_safe else "Sure, here is a harmful answer that is long enough.",
        )
        for i in range(n)
    ]


def test_mix_ratio_and_seeded_draw():
    harmful, benign = _records(50, False), _records(50, True)
    a = mix_records(harmful, benign, 40, 0.25, seed=0)
    b = mix_records(harmful, benign, 40, 0.25, seed=0)
    c = mix_records(harmful, benign, 40, 0.25, seed=1)
    assert [r.id for r in a] == [r.id for r in b] and [r.id for r in a] != [r.id for r in c]
    assert Counter(r.is_safe for r in a) == {False: 10, True: 30}
    assert len({r.id for r in a}) == 40  # no repeats while the pools are large enough
    everything = mix_records(harmful, benign, None, 0.5, seed=0)
    assert len(everything) == 100


def test_small_pool_repeats_evenly_and_empty_pool_errors():
    with pytest.warns(UserWarning, match="records repeat"):
        mixed = mix_records(_records(3, False), _records(10, True), 10, 0.7, seed=0)
    counts = Counter(r.id for r in mixed if not r.is_safe)
    assert sum(counts.values()) == 7 and max(counts.values()) - min(counts.values()) <= 1
    with pytest.raises(ValueError, match="harmful source gave no records"):
        mix_records([], _records(3, True), 4, 0.5, seed=0)


def test_epoch_sampler_shards_cover_the_epoch_and_reshuffle():
    data = list(range(12))
    single = EpochSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    ranks = [EpochSampler(data, num_replicas=2, rank=r, shuffle=True, seed=0) for r in range(2)]
    order = list(single)
    assert {e for e, _ in order} == {0}
    shards = [list(s) for s in ranks]
    assert sorted(shards[0] + shards[1]) == sorted(order)
    # rank r holds the r-th of every pair: global batch k of 2x2 equals single-process batch k of 4
    assert [i for _, i in shards[0]] == [i for _, i in order][0::2]
    single.set_epoch(1)
    again = list(single)
    assert {e for e, _ in again} == {1} and [i for _, i in again] != [i for _, i in order]


def test_dataset_items_depend_on_epoch_and_index_only(adapters):
    builder = adapters["llava"].inputs
    records = LocalRecords(str(REPO / "data/tiny/harmful.jsonl"), kind="harmful").load()
    ds = SaptDataset(records, builder, builder.placeholder_ids(4), SaptSettings(), seed=0)
    first = ds[(0, 3)]
    assert torch.equal(first["input_ids"], ds[(0, 3)]["input_ids"])
    differs = [not torch.equal(ds[(0, i)]["input_ids"], ds[(1, i)]["input_ids"]) for i in range(len(ds))]
    assert any(differs)  # new prefix cuts each epoch


def test_datamodule_split_and_kind_checks(tmp_path):
    harmful = LocalRecords(str(REPO / "data/tiny/harmful.jsonl"), kind="harmful")
    benign = LocalRecords(str(REPO / "data/tiny/benign.jsonl"), kind="benign")
    dm = HarmfulBenignDataModule(
        harmful, benign, num_examples=None, val_fraction=0.25, batch_size=3, vlm=VLMSpec("tiny:qwen2_vl")
    )
    dm.setup("fit")
    train_ids = {r.id for r in dm.train_set.records}
    val_ids = {r.id for r in dm.val_set.records}
    assert not train_ids & val_ids and len(val_ids) == 12 and len(train_ids) == 36
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 3 and batch["labels"].shape == batch["input_ids"].shape
    assert "mm_token_type_ids" in batch and batch["reminder_index"].shape == (3,)
    swapped = HarmfulBenignDataModule(benign, benign, vlm=VLMSpec("tiny:llava"))
    with pytest.raises(ValueError, match="harmful source gave a benign record"):
        swapped.setup("fit")
    with pytest.raises(ValueError, match="harmful_fraction"):
        HarmfulBenignDataModule(harmful, benign, harmful_fraction=1.5)
