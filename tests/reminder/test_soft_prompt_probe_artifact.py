import pytest
import torch

from reminder_lightning.reminder import SafetyProbe, SoftPrompt, load_reminder, save_reminder
from reminder_lightning.reminder.artifact import load_probe, save_probe


def test_text_init_is_embedding_of_the_text_repeated_when_short(adapters):
    adapter = adapters["gemma3"]  # Gemma scales its embeddings: the init must use the module's output
    emb, tok = adapter.input_embeddings(), adapter.tokenizer
    ids = tok("Refuse now", add_special_tokens=False)["input_ids"]
    n = len(ids) * 2 + 1
    soft = SoftPrompt(n, adapter.hidden_size)
    soft.initialize("text", emb, tok, text="Refuse now")
    expected = emb(torch.tensor((ids * 3)[:n]))
    torch.testing.assert_close(soft.weight, expected.float())
    assert not torch.allclose(soft.weight, emb.weight[torch.tensor((ids * 3)[:n])].float())


def test_vocab_and_random_init_are_seeded(adapters):
    emb = adapters["llava"].input_embeddings()
    a, b, c = (SoftPrompt(4, emb.weight.shape[1]) for _ in range(3))
    a.initialize("vocab", emb, seed=1)
    b.initialize("vocab", emb, seed=1)
    c.initialize("vocab", emb, seed=2)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    a.initialize("random", emb, seed=1)
    assert a.weight.std() > 0
    with pytest.raises(ValueError, match="Unknown init kind"):
        a.initialize("zeros", emb)
    with pytest.raises(ValueError, match="tokenizer"):
        a.initialize("text", emb)


def _two_clusters(n=200, h=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(h, generator=g)
    safe = torch.randn(n, h, generator=g) + 2 * direction
    harmful = torch.randn(n, h, generator=g) - 2 * direction
    return torch.cat([safe, harmful]), torch.cat([torch.ones(n), torch.zeros(n)])


def test_probe_fit_separates_safe_from_harmful():
    x, y = _two_clusters()
    probe = SafetyProbe.fit(x[::2], y[::2], num_components=4)
    p_safe = probe(x[1::2])
    accuracy = ((p_safe > 0.5).float() == y[1::2]).float().mean()
    assert accuracy > 0.97
    assert probe.num_components == 4 and probe.hidden_size == 32
    with pytest.raises(ValueError, match="both safe"):
        SafetyProbe.fit(x[:10], torch.ones(10))


def test_artifact_round_trip_with_probe(tmp_path):
    x, y = _two_clusters(h=16)
    probe = SafetyProbe.fit(x, y, num_components=3)
    soft = torch.randn(4, 16)
    path = save_reminder(tmp_path / "r.safetensors", soft, probe, {"base_model": "tiny:llava", "interval": 8})
    art = load_reminder(path)
    assert torch.equal(art.soft_prompt, soft)
    assert art.interval == 8 and art.threshold == 0.2 and art.metadata["base_model"] == "tiny:llava"
    assert art.metadata["num_tokens"] == "4" and "package_version" in art.metadata
    torch.testing.assert_close(art.probe(x), probe(x))
    assert torch.equal(art.soft_prompt_module().weight, soft)
    torch.testing.assert_close(load_probe(path)(x), probe(x))  # a reminder artifact also serves as probe file
    only_probe = save_probe(tmp_path / "p.safetensors", probe)
    torch.testing.assert_close(load_probe(only_probe)(x), probe(x))


def test_artifact_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_reminder(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    save_file({"other": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="x.safetensors.*soft_prompt"):
        load_reminder(tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="probe.mean"):
        load_probe(tmp_path / "x.safetensors")


def test_probe_layer_survives_artifacts_and_old_files_read_the_last_layer(tmp_path):
    from safetensors.torch import load_file, save_file

    x, y = _two_clusters(h=16)
    probe = SafetyProbe.fit(x, y, num_components=3, layer=5)
    assert probe.layer_index == 5
    art = load_reminder(save_reminder(tmp_path / "r.safetensors", torch.randn(2, 16), probe))
    assert art.probe.layer_index == 5
    assert load_probe(save_probe(tmp_path / "p.safetensors", probe)).layer_index == 5
    old = {k: v for k, v in load_file(str(tmp_path / "p.safetensors")).items() if k != "probe.layer"}
    save_file(old, str(tmp_path / "old.safetensors"))  # written before probes had a layer
    old_probe = load_probe(tmp_path / "old.safetensors")
    assert old_probe.layer_index == -1
    torch.testing.assert_close(old_probe(x), probe(x))
    states = tuple(torch.full((1, 2, 16), float(i)) for i in range(7))
    assert torch.equal(probe.select(states), states[5])
    with pytest.raises(ValueError, match="fitted on another model"):
        probe.select(states[:3])
