"""Hugging Face directories in and out: tiny random transformers models saved, loaded by fmblocks, compared.

For every architecture and variant: logits equal within 1e-5 (fp32), cached decoding equals transformers'
own cached decoding, and save_pretrained writes tensors identical to the original file that transformers
loads back with the same logits. Bad directories fail with CheckpointError naming what is wrong.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmblocks.errors import CheckpointError
from fmblocks.models import from_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")

VOCAB, D, HEADS, LAYERS, D_FF = 61, 32, 4, 2, 48
TOL = 1e-5


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random, so a mis-mapped bias or gain cannot hide behind its init value."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def hf_dir(model: torch.nn.Module, path: Path, **save: object) -> Path:
    model.save_pretrained(path, **save)
    return path


def gpt2(**overrides: object) -> torch.nn.Module:
    config = dict(vocab_size=VOCAB, n_positions=32, n_embd=D, n_layer=LAYERS, n_head=HEADS, n_inner=D_FF,
                  activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                  bos_token_id=0, eos_token_id=0)
    return randomize(transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**config, **overrides})))


def llama_family(cls: str = "Llama", **overrides: object) -> torch.nn.Module:
    config = dict(vocab_size=VOCAB, hidden_size=D, intermediate_size=D_FF, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5,
                  tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    hf_config = getattr(transformers, f"{cls}Config")(**{**config, **overrides})
    return randomize(getattr(transformers, f"{cls}ForCausalLM")(hf_config))


def ids(length: int, rows: int = 2) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, length), generator=torch.Generator().manual_seed(length))


@torch.no_grad()
def cached_logits(model: torch.nn.Module, x: torch.Tensor, prompt: int, *, ours: bool) -> torch.Tensor:
    """Logits of the prompt in one call, then of each further token one at a time with the cache."""
    if ours:
        caches = model.new_caches()
        steps = [model(x[:, :prompt], caches=caches).logits]
        steps += [model(x[:, t : t + 1], caches=caches).logits for t in range(prompt, x.shape[1])]
    else:
        out = model(x[:, :prompt], use_cache=True)
        steps, past = [out.logits], out.past_key_values
        for t in range(prompt, x.shape[1]):
            out = model(x[:, t : t + 1], past_key_values=past, use_cache=True)
            steps.append(out.logits)
            past = out.past_key_values
    return torch.cat(steps, dim=1)


def assert_parity(ref: torch.nn.Module, path: Path, tmp_path: Path, length: int, *, prompt: int | None = None) -> float:
    """Load `path` with fmblocks, compare with `ref`, save back, reload with transformers; the max difference."""
    ours = from_pretrained(path)
    x = ids(length)
    worst = 0.0
    if prompt is not None:  # before the full forward: transformers' dynamic RoPE keeps state between calls
        theirs = cached_logits(ref, x, prompt, ours=False)
        diff = (cached_logits(ours, x, prompt, ours=True) - theirs).abs().max().item()
        assert diff < TOL, f"cached decoding differs by {diff}"
        worst = diff
    with torch.no_grad():
        expected = ref(x).logits
        diff = (ours(x).logits - expected).abs().max().item()
    assert diff < TOL, f"logits differ by {diff}"
    out = tmp_path / "ours"
    save_pretrained(ours, out)
    original = load_original(path)
    saved = load_file(out / "model.safetensors")
    assert sorted(saved) == sorted(original)
    assert all(torch.equal(saved[name], original[name]) for name in original)
    back = type(ref).from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.equal(back(x).logits, expected)
    return max(worst, diff)


def load_original(path: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def test_gpt2_tied_and_cached(tmp_path: Path) -> None:
    ref = gpt2()
    assert_parity(ref, hf_dir(ref, tmp_path / "hf"), tmp_path, 20, prompt=12)


def test_gpt2_untied_sharded(tmp_path: Path) -> None:
    ref = gpt2(tie_word_embeddings=False)
    path = hf_dir(ref, tmp_path / "hf", max_shard_size="20KB")
    assert (path / "model.safetensors.index.json").exists()
    assert_parity(ref, path, tmp_path, 16)


def test_checkpoint_dtype_is_kept(tmp_path: Path) -> None:
    path = hf_dir(gpt2().to(torch.bfloat16), tmp_path / "hf")
    ours = from_pretrained(path)
    assert ours.lm_head.weight.dtype == torch.bfloat16
    save_pretrained(ours, tmp_path / "ours")
    saved, original = load_file(tmp_path / "ours" / "model.safetensors"), load_original(path)
    assert all(saved[n].dtype == torch.bfloat16 and torch.equal(saved[n], original[n]) for n in original)


@pytest.mark.parametrize("tied", [False, True])
def test_llama_gqa(tmp_path: Path, tied: bool) -> None:
    ref = llama_family(tie_word_embeddings=tied)
    assert_parity(ref, hf_dir(ref, tmp_path / "hf"), tmp_path, 20, prompt=12)


ROPE_SCALINGS = {
    # max_position_embeddings is the trained context (16) for linear and dynamic, stretched by factor 2
    "linear": dict(max_position_embeddings=16, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0}),
    "dynamic": dict(max_position_embeddings=16, rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 500.0}),
    # yarn and llama3 name the trained context (12) and keep max_position_embeddings (32) as the new one
    "yarn": dict(rope_parameters={"rope_type": "yarn", "factor": 32 / 12, "rope_theta": 500.0,
                                  "original_max_position_embeddings": 12}),
    "llama3": dict(rope_parameters={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "rope_theta": 500.0, "original_max_position_embeddings": 12}),
}


@pytest.mark.parametrize("kind", list(ROPE_SCALINGS))
def test_llama_rope_scaling_past_the_trained_context(tmp_path: Path, kind: str) -> None:
    ref = llama_family(**ROPE_SCALINGS[kind])
    path = hf_dir(ref, tmp_path / "hf")
    model = from_pretrained(path)
    assert model.config.pos_options["scaling"]["type"] == kind
    assert_parity(ref, path, tmp_path, 28, prompt=18)  # 28 positions > the trained 16 / 12


def test_mistral_sliding_window_shorter_than_input(tmp_path: Path) -> None:
    ref = llama_family("Mistral", sliding_window=4)
    path = hf_dir(ref, tmp_path / "hf")
    model = from_pretrained(path)
    assert (model.config.attention, model.config.mixer_options) == ("sliding-window", {"window": 4})
    assert_parity(ref, path, tmp_path, 14, prompt=6)  # cached decoding with a window cache of 3 positions
    caches = model.new_caches()
    with torch.no_grad():
        model(ids(9), caches=caches)
        model(ids(1), caches=caches)
    assert (caches[0].length, caches[0].mixer.k.shape[-2]) == (10, 3)  # memory bounded by the window


def test_sliding_window_cache_with_left_padding_equals_no_cache(tmp_path: Path) -> None:
    from fmblocks.generation import generate

    model = from_pretrained(hf_dir(llama_family("Mistral", sliding_window=3), tmp_path / "hf"))
    prompt, mask = ids(7), torch.ones(2, 7, dtype=torch.long)
    prompt[1, :3], mask[1, :3] = 0, 0  # the second prompt is 4 tokens, left padded
    runs = [generate(model, prompt, 6, temperature=0.0, attention_mask=mask, use_cache=cached, return_logits=True)
            for cached in (True, False)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert (runs[0][1] - runs[1][1]).abs().max().item() < TOL


def test_qwen2_qkv_biases(tmp_path: Path) -> None:
    ref = llama_family("Qwen2")
    path = hf_dir(ref, tmp_path / "hf")
    model = from_pretrained(path)
    attn = model.stack.layers[0].attn
    assert attn.q_proj.bias is not None and attn.o_proj.bias is None and model.stack.layers[0].ffn.w_up.bias is None
    assert_parity(ref, path, tmp_path, 14, prompt=6)


@pytest.mark.parametrize("family", ["GPT2", "Llama", "Mistral", "Qwen2"])
def test_greedy_generation_equals_transformers(tmp_path: Path, family: str) -> None:
    from fmblocks.generation import generate

    ref = gpt2() if family == "GPT2" else llama_family(family, **({"sliding_window": 4} if family == "Mistral" else {}))
    ours = from_pretrained(hf_dir(ref, tmp_path / "hf"))
    prompt = ids(5, rows=1)
    theirs = ref.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    mine = generate(ours, prompt, max_new_tokens=8, temperature=0.0)
    assert torch.equal(mine[:, -8:], theirs[:, -8:])


def bert(cls: str = "BertForMaskedLM") -> torch.nn.Module:
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                     intermediate_size=D_FF, max_position_embeddings=24, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    return randomize(getattr(transformers, cls)(config))


def test_bert_masked_lm_with_padding_and_token_types(tmp_path: Path) -> None:
    ref = bert()
    path = hf_dir(ref, tmp_path / "hf")
    ours = from_pretrained(path)
    x, types = ids(12), torch.randint(0, 2, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    with torch.no_grad():
        expected = ref(x, attention_mask=mask, token_type_ids=types).logits
        got = ours(x, attention_mask=mask, token_type_ids=types).logits
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max().item() < TOL
    save_pretrained(ours, tmp_path / "ours")
    saved, original = load_file(tmp_path / "ours" / "model.safetensors"), load_original(path)
    assert sorted(saved) == sorted(original) and all(torch.equal(saved[n], original[n]) for n in original)
    back = transformers.BertForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.equal(back(x, attention_mask=mask, token_type_ids=types).logits, expected)


def test_bert_model_has_no_head_and_saves_without_one(tmp_path: Path) -> None:
    ref = bert("BertModel")
    ours = from_pretrained(hf_dir(ref, tmp_path / "hf"))
    x = ids(10)
    with torch.no_grad():
        assert (ours.encode(x) - ref(x).last_hidden_state).abs().max().item() < TOL
    save_pretrained(ours, tmp_path / "ours")
    saved = load_file(tmp_path / "ours" / "model.safetensors")
    assert not any(name.startswith(("cls.", "bert.")) for name in saved)  # BertModel layout, pooler not kept
    back = transformers.BertModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.equal(back(x).last_hidden_state, ref(x).last_hidden_state)


def test_shipped_minilm_loads_through_from_pretrained() -> None:
    from fmblocks.models.pretrained import minilm_path

    model = from_pretrained(minilm_path())
    assert (model.hub_arch, model.config.d_model, model.config.n_layers) == ("bert", 384, 6)


# --- bad directories ---------------------------------------------------------------------------------------


def edited(tmp_path: Path, **changes: object) -> Path:
    path = hf_dir(gpt2(), tmp_path / "hf")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **changes}))
    return path


def test_pickle_checkpoint_is_refused_with_a_way_to_convert(tmp_path: Path) -> None:
    path = hf_dir(gpt2(), tmp_path / "hf")
    (path / "model.safetensors").rename(path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*safetensors only.*safe_serialization=True"):
        from_pretrained(path)


def test_unknown_architecture_lists_the_supported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"model_type 't5'.*supported model types: .*gpt2.*llama"):
        from_pretrained(edited(tmp_path, model_type="t5"))


@pytest.mark.parametrize("field, value, expected", [
    ("scale_attn_by_inverse_layer_idx", True, r"scale_attn_by_inverse_layer_idx=True is not supported.*False"),
    ("activation_function", "swish", r"activation_function='swish' is not supported.*'gelu_new'"),
])
def test_unsupported_field_is_named(tmp_path: Path, field: str, value: object, expected: str) -> None:
    with pytest.raises(CheckpointError, match=expected):
        from_pretrained(edited(tmp_path, **{field: value}))


def test_unsupported_rope_type_is_named(tmp_path: Path) -> None:
    path = hf_dir(llama_family(), tmp_path / "hf")
    config = json.loads((path / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 500.0}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"rope_type 'longrope'.*supported: default, linear, dynamic, yarn, llama3"):
        from_pretrained(path)


def test_missing_files_and_wrong_shapes(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no config.json"):
        from_pretrained(tmp_path)
    path = edited(tmp_path, n_embd=2 * D)
    with pytest.raises(CheckpointError, match=r"transformer\.wte\.weight: shape \(61, 32\) in the checkpoint"):
        from_pretrained(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        from_pretrained(path)


def test_a_model_no_architecture_expresses_is_refused(tmp_path: Path) -> None:
    from fmblocks.models import build_model, preset

    model = build_model(preset("gpt2-style", vocab_size=VOCAB, d_model=D, n_heads=HEADS, n_layers=1, d_ff=D_FF,
                               max_len=16, pos="alibi"))
    with pytest.raises(CheckpointError, match=r"gpt2: gpt2 cannot express pos='alibi'"):
        save_pretrained(model, tmp_path / "out")


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_vit_image_classification(tmp_path: Path, qkv_bias: bool) -> None:
    config = transformers.ViTConfig(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                    intermediate_size=D_FF, image_size=12, patch_size=4, num_channels=3, num_labels=5,
                                    qkv_bias=qkv_bias, id2label={i: f"digit {i}" for i in range(5)})
    ref = randomize(transformers.ViTForImageClassification(config))
    path = hf_dir(ref, tmp_path / "hf")
    ours = from_pretrained(path)
    images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ref(images).logits
        assert (ours(images).logits - expected).abs().max().item() < TOL
    save_pretrained(ours, tmp_path / "ours")
    saved, original = load_file(tmp_path / "ours" / "model.safetensors"), load_original(path)
    assert sorted(saved) == sorted(original) and all(torch.equal(saved[n], original[n]) for n in original)
    back = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours").eval()
    assert back.config.id2label[3] == "digit 3"
    with torch.no_grad():
        assert torch.equal(back(images).logits, expected)


def test_esm2_masked_lm_with_token_dropout_and_padding(tmp_path: Path) -> None:
    config = transformers.EsmConfig(vocab_size=33, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                    intermediate_size=D_FF, max_position_embeddings=40, position_embedding_type="rotary",
                                    token_dropout=True, mask_token_id=32, pad_token_id=1, layer_norm_eps=1e-5,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ref = randomize(transformers.EsmForMaskedLM(config))
    path = hf_dir(ref, tmp_path / "hf")
    ours = from_pretrained(path)
    assert ours.config.token_dropout == 32
    x = torch.randint(4, 30, (2, 14), generator=torch.Generator().manual_seed(2))
    x[0, 3] = x[0, 7] = x[1, 2] = 32  # mask tokens: zeroed, the rows rescaled
    mask = torch.ones(2, 14, dtype=torch.long)
    x[1, 10:], mask[1, 10:] = 1, 0  # right padding
    with torch.no_grad():
        expected = ref(x, attention_mask=mask).logits
        got = ours(x, attention_mask=mask).logits
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max().item() < TOL
    save_pretrained(ours, tmp_path / "ours")
    saved = load_file(tmp_path / "ours" / "model.safetensors")
    original = {n.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): t
                for n, t in load_original(path).items() if "contact_head" not in n and "inv_freq" not in n}
    assert sorted(saved) == sorted(original) and all(torch.equal(saved[n], original[n]) for n in original)
    back = transformers.EsmForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.equal(back(x, attention_mask=mask).logits, expected)
