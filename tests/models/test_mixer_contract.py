"""The mixer contract in every model: intermediates never change the model, the weights returned are the
operator's own, options take effect, long-conv and hybrid decoders train, are causal and generate."""

import pytest
import torch

from fmblocks.blocks import MIXERS
from fmblocks.blocks.attention import softmax_weights
from fmblocks.blocks.efficient import linear_weights, sparse_mask
from fmblocks.errors import ConfigError
from fmblocks.generation import generate
from fmblocks.models import build_model, preset

SMALL = dict(vocab_size=40, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=48)
CORES = {"sdpa": {}, "math": {}, "chunked": {"block_size": 8}, "sparse": {"window": 4, "n_global": 1},
         "sliding-window": {"window": 5}, "linear": {"feature_map": "elu"},
         "flex": {"pattern": "local-global", "window": 4, "n_global": 1, "compile": False}}
VARIANTS = [("attention", core, options) for core, options in CORES.items()] + [("long-conv", "sdpa", {}), ("hyena", "sdpa", {}),
                                                                     ("hyena", "sdpa", {"order": 3})]
PRESETS = {"decoder": "llama-style", "encoder": "bert-style", "encoder-decoder": "transformer-base"}


def test_every_builtin_mixer_is_covered() -> None:
    assert {"attention", "long-conv", "hyena"} <= set(MIXERS)
    from fmblocks.blocks import ATTENTION_CORES
    assert set(CORES) <= set(ATTENTION_CORES)


def model_of(arch: str, mixer: str, core: str, options: dict, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    config = preset(PRESETS[arch], **SMALL, mixer=mixer, attention=core, mixer_options=options, dropout=0.0,
                    **({"n_kv_heads": 2} if arch == "decoder" else {}), **extra)
    return build_model(config).eval()


def forward(model: torch.nn.Module, arch: str, ids: torch.Tensor, keep: torch.Tensor, **kwargs):
    if arch == "decoder":
        return model(ids, **kwargs)
    if arch == "encoder":
        return model(ids, attention_mask=keep, **kwargs)
    return model(ids, ids[:, :7], attention_mask=keep, **kwargs)


@pytest.mark.parametrize("arch", sorted(PRESETS))
@pytest.mark.parametrize(("mixer", "core", "options"), VARIANTS, ids=[f"{m}-{c}-{len(o)}" for m, c, o in VARIANTS])
def test_intermediates_never_change_the_logits(arch: str, mixer: str, core: str, options: dict) -> None:
    model = model_of(arch, mixer, core, options)
    ids = torch.randint(0, 40, (2, 20))
    keep = torch.ones(2, 20, dtype=torch.long)
    keep[1, 15:] = 0  # right padding
    with torch.no_grad():
        plain = forward(model, arch, ids, keep).logits
        seen = forward(model, arch, ids, keep, return_intermediates=True)
    torch.testing.assert_close(seen.logits, plain, atol=1e-6, rtol=0)
    record = seen.intermediates["encoder"] if arch == "encoder-decoder" else seen.intermediates
    weights = record["attention"]
    assert len(weights) == SMALL["n_layers"] and weights[0].shape[0] == 2 and weights[0].shape[-1] == 20
    if mixer == "attention":  # weights sum to 1 over the visible keys (0 for a row that sees none)
        sums = weights[0].sum(-1)
        assert ((sums - 1).abs() < 1e-5).logical_or(sums == 0).all()
    if arch != "decoder":
        assert (weights[0][1, ..., 15:] == 0).all()  # nobody mixes in the source padding


def _layer_inputs(attn, x: torch.Tensor):
    """q, k, v (B, H, T, Dh) of an attention layer, as its forward computes them (no positions here)."""
    q, k, v = (attn._heads(proj(x), n) for proj, n in ((attn.q_proj, attn.n_heads), (attn.k_proj, attn.n_kv_heads),
                                                      (attn.v_proj, attn.n_kv_heads)))
    return q, k, v


@pytest.mark.parametrize("core", sorted(CORES))
@pytest.mark.parametrize("causal", [False, True])
def test_returned_weights_are_the_cores_definition_and_make_the_output(core: str, causal: bool) -> None:
    from fmblocks.blocks.attention import MultiHeadAttention

    torch.manual_seed(1)
    attn = MultiHeadAttention(16, 2, core=core, **CORES[core]).eval()
    x = torch.randn(2, 19, 16)
    y, weights = attn(x, causal=causal, return_weights=True)
    q, k, v = _layer_inputs(attn, x)
    t = x.shape[1]
    if core == "linear":
        expected = linear_weights(q, k, causal=causal)
    elif core in ("sparse", "flex"):
        expected = softmax_weights(q, k, sparse_mask(t, window=4, n_global=1), causal=causal)
    elif core == "sliding-window":
        distance = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs()
        expected = softmax_weights(q, k, distance < 5, causal=causal)
    else:
        expected = softmax_weights(q, k, causal=causal)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=1e-5)
    made = attn.o_proj((weights @ v).transpose(1, 2).reshape(2, t, 16))  # the weights reproduce the output
    torch.testing.assert_close(made, y, atol=1e-5, rtol=1e-5)


def test_long_conv_weights_reproduce_its_output() -> None:
    torch.manual_seed(2)
    mixer = MIXERS.get("long-conv")(16, 32).eval()
    x = torch.randn(2, 12, 16)
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[1, :3] = False  # left padding
    mask = keep[:, None, None, :]
    y, weights = mixer(x, mask=mask, return_weights=True)
    assert weights.shape == (2, 16, 12, 12) and (weights.triu(1) == 0).all()
    v, _ = mixer.in_proj(x).chunk(2, dim=-1)
    made = mixer.out_proj(torch.einsum("bcts,bsc->btc", weights, v))
    torch.testing.assert_close(made, y, atol=1e-5, rtol=1e-5)


def test_options_take_effect() -> None:
    ids = torch.randint(0, 40, (1, 40))

    def logits(core: str, **options) -> torch.Tensor:
        with torch.no_grad():
            return model_of("decoder", "attention", core, options)(ids).logits

    assert not torch.allclose(logits("sparse", window=8), logits("sparse", window=64), atol=1e-4)
    assert not torch.allclose(logits("sliding-window", window=4), logits("sliding-window", window=40), atol=1e-4)
    assert not torch.allclose(logits("linear", feature_map="elu"), logits("linear", feature_map="relu"), atol=1e-4)
    torch.testing.assert_close(logits("chunked", block_size=3), logits("chunked", block_size=64), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits("sliding-window", window=48), logits("sdpa"), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match=r"known options: window, n_global, block_size"):
        model_of("decoder", "attention", "sparse", {"size": 3})
    with pytest.raises(ConfigError, match=r"unknown linear attention feature_map 'tanh'; known: elu, relu"):
        model_of("decoder", "attention", "linear", {"feature_map": "tanh"})


CORPUS = torch.tensor(([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] * 40)[:480])


KINDS = {"long-conv": "LongConvMixer", "hyena": "HyenaMixer", "attention": "MultiHeadAttention"}


@pytest.mark.parametrize("mixer", ["long-conv", ["long-conv", "attention"], "hyena", ["hyena", "attention"]],
                         ids=["long-conv", "hybrid", "hyena", "hyena-hybrid"])
def test_long_conv_decoders_train_are_causal_and_generate(mixer) -> None:
    model = model_of("decoder", mixer, "sdpa", {} if isinstance(mixer, str) else {"attention": {}})
    kinds = [type(layer.attn).__name__ for layer in model.stack.layers]
    assert kinds == [KINDS[name] for name in ([mixer] * 2 if isinstance(mixer, str) else mixer)]
    ids = torch.randint(0, 40, (2, 30))
    with torch.no_grad():  # causal: changing token j changes no earlier logit (up to the FFT's rounding)
        base = model(ids).logits
        for j in (0, 11, 29):
            changed = ids.clone()
            changed[:, j] = (changed[:, j] + 1) % 40
            after = model(changed).logits
            assert j == 0 or (after[:, :j] - base[:, :j]).abs().max() < 1e-6
            assert (after[:, j] - base[:, j]).abs().max() > 1e-3
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    windows = CORPUS.unfold(0, 25, 5)  # (N, 25)
    losses = []
    for step in range(40):
        batch = windows[torch.randint(0, len(windows), (8,))]
        loss = model(batch[:, :-1], batch[:, 1:]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    prompt = torch.tensor([[1, 2, 3], [5, 6, 7]])
    cached = generate(model, prompt, 20, temperature=0)
    assert torch.equal(cached, generate(model, prompt, 20, temperature=0, use_cache=False))
    assert cached[0, 3:8].tolist() == [4, 5, 6, 7, 8]  # it learned the sequence


@pytest.mark.parametrize("mixer", ["long-conv", "hyena"])
def test_left_padded_long_conv_rows_equal_their_prompts_alone(mixer: str) -> None:
    model = model_of("decoder", mixer, "sdpa", {})
    alone = torch.randint(0, 40, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), alone], dim=1)
    keep = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        torch.testing.assert_close(model(padded, attention_mask=keep).logits[:, 3:], model(alone).logits,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("core", sorted(CORES))
def test_a_models_recorded_weights_are_recomputed_from_its_first_layer(core: str) -> None:
    """Layer 0 of a Llama-style decoder: norm, projections, RoPE, then the core's definition of its weights."""
    model = model_of("decoder", "attention", core, CORES[core])
    ids = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        record = model(ids, return_intermediates=True).intermediates
        layer = model.stack.layers[0]
        attn, h = layer.attn, layer.norm1(record["embeddings"])
        q, k, _ = _layer_inputs(attn, h)
        where = torch.arange(20)
        q, k = attn.positional.rotate(q, where), attn.positional.rotate(k, where)
        k = k.repeat_interleave(attn.n_heads // attn.n_kv_heads, dim=1)  # grouped-query heads
        expected = attn.core.weights(q, k, causal=True)
    torch.testing.assert_close(record["attention"][0], expected, atol=1e-6, rtol=1e-5)
