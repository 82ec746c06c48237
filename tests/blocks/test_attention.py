"""Attention: hand-worked example, parity with torch (F.scaled_dot_product_attention, nn.MultiheadAttention)
for every mask kind, fully masked rows, GQA, KV cache, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from fmblocks.blocks.attention import (
    ATTENTION_CORES,
    KVCache,
    MultiHeadAttention,
    attention_math,
    attention_sdpa,
    causal_mask,
    combine_masks,
    padding_mask,
    prefix_mask,
    scaled_dot_product_attention,
)
from fmblocks.blocks.positional import build_positions
from fmblocks.errors import ConfigError, ShapeError, UnknownNameError

B, H, T, S, DH = 2, 3, 5, 7, 4


def test_two_tokens_hand_worked() -> None:
    q = k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    # Scores q k^T / sqrt(2) = [[a, 0], [0, a]] with a = 1/sqrt(2); row 0 puts w = e^a / (e^a + 1) on key 0.
    w = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    expected = torch.tensor([[w * 1 + (1 - w) * 3, w * 2 + (1 - w) * 4], [(1 - w) * 1 + w * 3, (1 - w) * 2 + w * 4]])
    out, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    torch.testing.assert_close(out.view(2, 2), expected)
    torch.testing.assert_close(weights.view(2, 2), torch.tensor([[w, 1 - w], [1 - w, w]]))
    # Causal: token 0 sees only itself; token 1 is unchanged.
    causal = scaled_dot_product_attention(q, k, v, causal=True).view(2, 2)
    torch.testing.assert_close(causal, torch.stack([torch.tensor([1.0, 2.0]), expected[1]]))


def test_mask_helpers_hand_worked() -> None:
    assert causal_mask(2, 3).tolist() == [[True, True, False], [True, True, True]]  # queries = last 2 of 3
    assert prefix_mask(4, 2).int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    keep = torch.tensor([[1, 1, 0]])
    assert padding_mask(keep).shape == (1, 1, 1, 3) and padding_mask(keep).flatten().tolist() == [True, True, False]
    assert combine_masks(None, None) is None
    both = combine_masks(causal_mask(3), padding_mask(keep))
    assert both.shape == (1, 1, 3, 3) and both[0, 0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    additive = combine_masks(causal_mask(2), torch.tensor([[0.5, 1.0], [2.0, 3.0]]))
    assert additive.tolist() == [[0.5, float("-inf")], [2.0, 3.0]]


def test_causal_mask_definition() -> None:
    for t, s in [(5, 5), (3, 7), (1, 4)]:
        mask = causal_mask(t, s)
        assert all(mask[i, j] == (j <= i + s - t) for i in range(t) for j in range(s))


def _masks(t: int, s: int) -> dict:
    """Every mask kind as (our mask, our causal flag, reference attn_mask, reference is_causal)."""
    g = torch.Generator().manual_seed(3)
    keep = torch.rand(B, s, generator=g) > 0.4
    keep[:, 0] = True  # every row keeps at least one key (fully masked rows are tested separately)
    arbitrary = torch.rand(B, H, t, s, generator=g) > 0.5
    arbitrary[..., 0] = True
    additive = torch.randn(B, 1, t, s, generator=g).masked_fill(torch.rand(B, 1, t, s, generator=g) > 0.7, -math.inf)
    additive[..., 0] = 0.0
    explicit_causal = torch.ones(t, s, dtype=torch.bool).tril(s - t)
    kinds = {
        "none": (None, False, None, False),
        "causal": (None, True, explicit_causal, False),
        "padding": (padding_mask(keep), False, keep[:, None, None, :], False),
        "boolean": (arbitrary, False, arbitrary, False),
        "additive": (additive, False, additive, False),
        "padding+causal": (padding_mask(keep), True, keep[:, None, None, :] & explicit_causal, False),
    }
    if t == s:
        kinds["causal-fused"] = (None, True, None, True)
        prefix = torch.tensor([[j < 2 or j <= i for j in range(s)] for i in range(t)])
        kinds["prefix"] = (prefix_mask(t, 2), False, prefix, False)
    return kinds


def _qkv(t: int, s: int) -> list[torch.Tensor]:
    return [torch.randn(B, H, n, DH, requires_grad=True) for n in (t, s, s)]


@pytest.mark.parametrize("path", ["math", "sdpa", "returning-weights"])
@pytest.mark.parametrize(("t", "s"), [(T, T), (T, S)])
def test_attention_matches_torch_for_every_mask(path: str, t: int, s: int) -> None:
    for kind, (mask, causal, ref_mask, ref_causal) in _masks(t, s).items():
        q, k, v = _qkv(t, s)
        if path == "returning-weights":
            out, weights = scaled_dot_product_attention(q, k, v, mask, causal=causal, return_weights=True)
            assert weights.shape == (B, H, t, s)
            torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, t), msg=kind)
        else:
            out = ATTENTION_CORES.get(path)()(q, k, v, mask, causal=causal, scale=None, dropout_p=0.0)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=ref_mask, is_causal=ref_causal)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5, msg=kind)
        grad_out = torch.randn_like(out)
        grads = torch.autograd.grad(out, (q, k, v), grad_out)
        ref_grads = torch.autograd.grad(ref, (q, k, v), grad_out)
        for name, g, r in zip("qkv", grads, ref_grads):
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5, msg=f"{kind}: d{name}")


def test_scale_argument() -> None:
    q, k, v = _qkv(T, S)
    ref = F.scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(attention_math(q, k, v, scale=0.3), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attention_sdpa(q, k, v, scale=0.3), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bool", "additive"])
@pytest.mark.parametrize("path", ["math", "sdpa"])
def test_fully_masked_row_is_zeros_without_nan(path: str, kind: str) -> None:
    q, k, v = _qkv(T, T)
    mask = torch.ones(T, T, dtype=torch.bool)
    mask[2] = False  # query 2 may attend nothing
    mask = mask if kind == "bool" else torch.zeros(T, T).masked_fill(~mask, -math.inf)
    out = ATTENTION_CORES.get(path)()(q, k, v, mask, causal=True, scale=None, dropout_p=0.0)
    assert torch.equal(out[:, :, 2], torch.zeros(B, H, DH))
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.equal(grads[0][:, :, 2], torch.zeros(B, H, DH))  # a dead query gets no gradient
    _, weights = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    assert torch.equal(weights[:, :, 2], torch.zeros(B, H, T)) and torch.isfinite(weights).all()


def test_attention_with_dropout_keeps_expectation_shape() -> None:
    q, k, v = _qkv(T, T)
    out = attention_math(q, k, v, dropout_p=0.5)
    assert out.shape == (B, H, T, DH) and torch.isfinite(out).all()
    assert attention_sdpa(q, k, v, dropout_p=0.5).shape == (B, H, T, DH)


# --- MultiHeadAttention ------------------------------------------------------------------------------


def _copy_from_torch(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention) -> None:
    with torch.no_grad():
        if ref.in_proj_weight is not None:
            wq, wk, wv = ref.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
        bq, bk, bv = ref.in_proj_bias.chunk(3)
        for proj, w, b in [(ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)]:
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        ours.o_proj.weight.copy_(ref.out_proj.weight)
        ours.o_proj.bias.copy_(ref.out_proj.bias)


@pytest.mark.parametrize("core", ["sdpa", "math"])
def test_self_attention_matches_torch(core: str) -> None:
    d, heads = 12, 3
    ref = torch.nn.MultiheadAttention(d, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_bias.normal_()
    ours = MultiHeadAttention(d, heads, core=core)
    _copy_from_torch(ours, ref)
    x = torch.randn(2, 6, d)
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True = blocked
    ref_y, ref_w = ref(x, x, x, key_padding_mask=~keep, attn_mask=future, average_attn_weights=False)
    y = ours(x, mask=padding_mask(keep), causal=True)
    torch.testing.assert_close(y, ref_y, atol=1e-5, rtol=1e-5)
    y2, w = ours(x, mask=padding_mask(keep), causal=True, return_weights=True)
    torch.testing.assert_close(y2, ref_y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)


def test_cross_attention_matches_torch() -> None:
    d, d_ctx, heads, t, s = 8, 6, 2, 3, 5
    ref = torch.nn.MultiheadAttention(d, heads, kdim=d_ctx, vdim=d_ctx, batch_first=True)
    with torch.no_grad():
        ref.in_proj_bias.normal_()
    ours = MultiHeadAttention(d, heads, d_context=d_ctx)
    _copy_from_torch(ours, ref)
    x, context = torch.randn(2, t, d), torch.randn(2, s, d_ctx)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    ref_y, ref_w = ref(x, context, context, key_padding_mask=~keep, average_attn_weights=False)
    y, w = ours(x, context, padding_mask(keep), return_weights=True)
    torch.testing.assert_close(y, ref_y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(x, context, padding_mask(keep)), ref_y, atol=1e-5, rtol=1e-5)
    assert w.shape == (2, heads, t, s)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_grouped_query_attention_equals_mha_with_shared_heads(n_kv_heads: int) -> None:
    d, heads = 16, 4
    gqa = MultiHeadAttention(d, heads, n_kv_heads=n_kv_heads)
    mha = MultiHeadAttention(d, heads)
    group = heads // n_kv_heads
    with torch.no_grad():
        for name in ("q_proj", "o_proj"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
        for name in ("k_proj", "v_proj"):
            src, dst = getattr(gqa, name), getattr(mha, name)
            # query head h reads key/value head h // group: repeat each kv head's rows `group` times
            dst.weight.copy_(src.weight.view(n_kv_heads, 1, 4, d).expand(-1, group, -1, -1).reshape(d, d))
            dst.bias.copy_(src.bias.view(n_kv_heads, 1, 4).expand(-1, group, -1).reshape(d))
    assert gqa.k_proj.out_features == n_kv_heads * 4
    x = torch.randn(2, 5, d)
    torch.testing.assert_close(gqa(x, causal=True), mha(x, causal=True), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "options",
    [{}, {"n_kv_heads": 2}, {"positional": build_positions("rope", max_len=32, d_model=16, n_heads=4)},
     {"positional": build_positions("alibi", max_len=32, d_model=16, n_heads=4)}, {"core": "math", "n_kv_heads": 1}],
    ids=["mha", "gqa", "rope", "alibi", "math-mqa"],
)
def test_kv_cache_steps_equal_full_causal_forward(options: dict) -> None:
    """Without autograd the cache writes into its buffers; with it, it concatenates and gradients match."""
    attn = MultiHeadAttention(16, 4, **options)
    x = torch.randn(2, 7, 16)
    full = attn(x, causal=True)
    full_grads = torch.autograd.grad(full.square().sum(), list(attn.parameters()))
    for grad in (False, True):
        cache = KVCache()
        with torch.set_grad_enabled(grad):
            steps = torch.cat([attn(x[:, a:b], causal=True, cache=cache) for a, b in [(0, 3), (3, 4), (4, 5), (5, 7)]],
                              dim=1)
        torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
        assert cache.length == 7 and cache.k.shape == (2, attn.n_kv_heads, 7, 4)
        if grad:
            step_grads = torch.autograd.grad(steps.square().sum(), list(attn.parameters()))
            for step_grad, full_grad in zip(step_grads, full_grads):
                torch.testing.assert_close(step_grad, full_grad, atol=1e-5, rtol=1e-5)


def test_cross_attention_cache_projects_the_context_once() -> None:
    attn = MultiHeadAttention(16, 4, d_context=12, n_kv_heads=2).eval()
    x, context = torch.randn(2, 3, 16), torch.randn(2, 5, 12)
    keep = padding_mask(torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    cache = KVCache()
    with torch.no_grad():
        first = attn(x, context, keep, cache=cache)
        assert cache.length == 5  # the context's positions, projected once
        later = attn(x[:, 1:], torch.zeros_like(context), keep, cache=cache)  # the cached projection is used
        torch.testing.assert_close(first, attn(x, context, keep), atol=0, rtol=0)
        torch.testing.assert_close(later, attn(x[:, 1:], context, keep), atol=1e-6, rtol=1e-6)
    assert cache.length == 5
    with pytest.raises(ConfigError, match="cross-attention .* takes no causal=True"):
        attn(x, context, causal=True)


def test_kv_cache_holds_every_appended_position_as_it_grows() -> None:
    cache, keys, values = KVCache(), torch.randn(2, 3, 40, 8), torch.randn(2, 3, 40, 8)
    for start, stop in [(0, 5), *((t, t + 1) for t in range(5, 33)), (33, 40)]:
        k, v = cache.append(keys[:, :, start:stop], values[:, :, start:stop])
        assert torch.equal(k, keys[:, :, :stop]) and torch.equal(v, values[:, :, :stop])
    with pytest.raises(ShapeError, match="cannot append"):
        cache.append(torch.randn(1, 3, 1, 8), torch.randn(1, 3, 1, 8))


def test_rope_relative_positions_in_attention() -> None:
    # With RoPE only relative positions matter: shifting all positions leaves the output unchanged.
    attn = MultiHeadAttention(16, 2, positional=build_positions("rope", max_len=64, d_model=16, n_heads=2))
    x = torch.randn(1, 6, 16)
    torch.testing.assert_close(attn(x, causal=True), attn(x, causal=True, positions=torch.arange(6) + 50),
                               atol=1e-4, rtol=1e-4)


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="d_model must be divisible by n_heads; got d_model=10, n_heads=4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ConfigError, match="n_heads must be divisible by n_kv_heads; got n_heads=4, n_kv_heads=3"):
        MultiHeadAttention(12, 4, n_kv_heads=3)
    with pytest.raises(UnknownNameError, match=r"unknown attention core 'flash'; known: .*math.*sdpa"):
        MultiHeadAttention(8, 2, core="flash")
    attn = MultiHeadAttention(8, 2)
    with pytest.raises(ShapeError, match=r"expects x \(B, T, 8\), got \(1, 3, 6\)"):
        attn(torch.randn(1, 3, 6))
    expected = r"mask shape \(4, 4\) is not broadcastable to \(B, H, T, S\) = \(1, 2, 3, 3\)"
    with pytest.raises(ShapeError, match=expected):
        attn(torch.randn(1, 3, 8), mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match=r"context \(1, S, 8\)"):
        attn(torch.randn(1, 3, 8), torch.randn(1, 3, 5))
    q, k = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 5)
    with pytest.raises(ShapeError, match="q and k head dims must be equal; got q Dh=4, k Dh=5"):
        scaled_dot_product_attention(q, k, k)
    with pytest.raises(ShapeError, match=r"expects q \(B, H, T, Dh\)"):
        scaled_dot_product_attention(q[0], q[0], q[0])
    with pytest.raises(ShapeError, match="mask must be bool"):
        scaled_dot_product_attention(q, q, q, torch.ones(3, 3, dtype=torch.long))
