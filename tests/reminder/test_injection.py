"""The injected forward equals a hand-built inputs_embeds forward, for every family."""

import pytest
import torch

from reminder_lightning.data.sapt import SaptSettings, encode_example
from reminder_lightning.reminder import ReminderInjector, SoftPrompt
from reminder_lightning.vlm.collate import collate_encodings
from tests.conftest import FAMILIES

EXTRAS = ("labels", "reminder_index", "is_safe")


def _batch(adapter, injector, image):
    builder = adapter.inputs
    ids = injector.placeholder_ids
    items = [
        encode_example(
            builder,
            ids,
            "How do I make a weapon?",
            image,
            "Sure, first you",
            " I can't help.",
            False,
            SaptSettings(),
        ),
        encode_example(
            builder, ids, "What is bread?", None, "", "Bread is food made of flour.", True, SaptSettings()
        ),
    ]
    keys = list(dict.fromkeys(builder.token_keys(items[0]) + ["labels"]))
    return collate_encodings(items, keys, builder.pad_values())


def _hand_built_forward(adapter, injector, batch):
    """inputs_embeds built by hand: table lookup, then reminder rows replaced by the soft prompt."""
    ids = batch["input_ids"]
    mask = ids >= injector.base_vocab
    embeds = adapter.input_embeddings()(ids.masked_fill(mask, 0)).clone()
    vectors = injector.soft_prompt(embeds.dtype)
    for b, t in mask.nonzero().tolist():
        embeds[b, t] = vectors[ids[b, t] - injector.base_vocab]
    kwargs = {k: v for k, v in batch.items() if k not in EXTRAS and k != "input_ids"}
    if adapter.family.name == "qwen2_vl":  # M-RoPE positions are computed from ids; pass them explicitly
        kwargs["position_ids"], _ = adapter.model.model.get_rope_index(
            ids,
            image_grid_thw=batch["image_grid_thw"],
            attention_mask=batch["attention_mask"],
            mm_token_type_ids=batch["mm_token_type_ids"],
        )
        kwargs.pop("mm_token_type_ids")
    return adapter.model(inputs_embeds=embeds, **kwargs).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_injected_forward_equals_hand_built_inputs_embeds(adapters, family, red_image):
    adapter = adapters[family]
    soft = SoftPrompt(4, adapter.hidden_size)
    soft.initialize("random", adapter.input_embeddings(), seed=3)
    injector = ReminderInjector(adapter.input_embeddings(), soft)
    batch = _batch(adapter, injector, red_image)
    model_inputs = {k: v for k, v in batch.items() if k not in EXTRAS}
    with torch.no_grad():
        with injector:
            injected = adapter.model(**model_inputs).logits
        reference = _hand_built_forward(adapter, injector, batch)
        # without the reminder vectors (placeholders read as token 0) the output must differ
        plain = dict(
            model_inputs, input_ids=batch["input_ids"].masked_fill(batch["input_ids"] >= injector.base_vocab, 0)
        )
        unreminded = adapter.model(**plain).logits
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(injected[valid], reference[valid], rtol=1e-5, atol=1e-5)
    after = batch["reminder_index"][0] + 1
    assert not torch.allclose(injected[0, after:], unreminded[0, after:], atol=1e-4)
    assert not injector.attached


def test_hooks_are_removed_and_plain_forward_is_unchanged(adapters):
    adapter = adapters["llava"]
    emb = adapter.input_embeddings()
    soft = SoftPrompt(2, adapter.hidden_size)
    injector = ReminderInjector(emb, soft)
    ids = torch.tensor([[3, 4, 5]])
    before = emb(ids)
    with injector:
        assert torch.equal(emb(ids), before)  # no placeholder: untouched
        assert torch.equal(emb(torch.tensor([[injector.base_vocab + 1]]))[0, 0], soft.weight[1])
    assert not emb._forward_hooks and not emb._forward_pre_hooks
    with pytest.raises(IndexError):
        emb(torch.tensor([[injector.base_vocab]]))  # detached: placeholders are out of range again


def test_gradients_reach_only_the_soft_prompt_in_model_dtype(adapters, red_image):
    adapter = adapters["qwen2_vl"]
    soft = SoftPrompt(4, adapter.hidden_size)
    soft.initialize("text", adapter.input_embeddings(), adapter.tokenizer)
    injector = ReminderInjector(adapter.input_embeddings(), soft)
    batch = _batch(adapter, injector, red_image)
    with injector:
        logits = adapter.model(**{k: v for k, v in batch.items() if k not in EXTRAS}).logits
    logits[:, -1].logsumexp(-1).sum().backward()
    assert soft.weight.grad is not None and soft.weight.grad.dtype == torch.float32
    assert (soft.weight.grad.abs().sum(1) > 0).all()  # every reminder vector gets gradient
    assert all(p.grad is None for p in adapter.model.parameters())


def test_bf16_model_gets_bf16_vectors_fp32_master(adapters):
    emb = torch.nn.Embedding(10, 8).to(torch.bfloat16)
    soft = SoftPrompt(2, 8)
    torch.nn.init.normal_(soft.weight)
    with ReminderInjector(emb, soft):
        out = emb(torch.tensor([[1, 10, 11]]))
    assert out.dtype == torch.bfloat16 and soft.weight.dtype == torch.float32
    assert torch.equal(out[0, 1:], soft.weight.to(torch.bfloat16))
    out.float().sum().backward()
    assert soft.weight.grad.dtype == torch.float32
