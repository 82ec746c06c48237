"""Efficient attention: each core equals its exact/dense reference; memory stays linear."""

import math

import pytest
import torch
import torch.nn.functional as F

from fmblocks.blocks.attention import ATTENTION_CORES, MultiHeadAttention, attention_math, padding_mask
from fmblocks.blocks.efficient import (
    chunked_attention,
    linear_attention,
    linear_attention_math,
    online_softmax_attention,
    sparse_attention,
    sparse_mask,
)
from fmblocks.errors import ConfigError

B, H, DH = 2, 2, 8


def _qkv(t: int, s: int) -> list[torch.Tensor]:
    return [torch.randn(B, H, n, DH, requires_grad=True) for n in (t, s, s)]


def _assert_same(out: torch.Tensor, ref: torch.Tensor, inputs: list[torch.Tensor], atol: float = 1e-5) -> None:
    torch.testing.assert_close(out, ref, atol=atol, rtol=1e-5)
    grad_out = torch.randn_like(out)
    for g, r in zip(torch.autograd.grad(out, inputs, grad_out), torch.autograd.grad(ref, inputs, grad_out)):
        torch.testing.assert_close(g, r, atol=atol, rtol=1e-5)


def test_all_cores_registered() -> None:
    assert ATTENTION_CORES.names() == ["chunked", "flex", "linear", "math", "sdpa", "sliding-window", "sparse"]


# --- chunked ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [chunked_attention, online_softmax_attention])
@pytest.mark.parametrize(("t", "s"), [(37, 37), (20, 45), (64, 64), (45, 20)])
@pytest.mark.parametrize("kind", ["none", "causal", "padding", "padding+causal", "additive"])
def test_chunked_equals_sdpa(t: int, s: int, kind: str, chunked) -> None:
    q, k, v = _qkv(t, s)
    keep = torch.rand(B, s) > 0.3
    keep[:, 0] = True
    mask = padding_mask(keep) if "padding" in kind else None
    if kind == "additive":
        mask = torch.randn(t, s).masked_fill(torch.rand(t, s) > 0.7, -math.inf)
        mask[:, 0] = 0.0
    causal = "causal" in kind
    ref_mask = mask
    if causal:
        ref_mask = torch.ones(t, s, dtype=torch.bool).tril(s - t) & (True if mask is None else mask)
    ref = attention_math(q, k, v, ref_mask)  # rows with no visible key (t > s, causal): zeros, as in chunked
    _assert_same(chunked(q, k, v, mask, causal=causal, block_size=16), ref, [q, k, v])


@pytest.mark.parametrize("chunked", [chunked_attention, online_softmax_attention])
def test_chunked_fully_masked_rows_are_zero(chunked) -> None:
    q, k, v = _qkv(10, 10)
    mask = torch.ones(10, 10, dtype=torch.bool)
    mask[3] = False
    out = chunked(q, k, v, mask, causal=True, block_size=4)
    assert torch.equal(out[:, :, 3], torch.zeros(B, H, DH))
    torch.testing.assert_close(out, attention_math(q, k, v, mask, causal=True), atol=1e-5, rtol=1e-5)
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(out.sum(), (q, k, v)))


def test_chunked_hand_worked_single_key_per_block() -> None:
    # Two keys in two blocks of size 1: online softmax must rescale block 1's sum once block 2 is seen.
    q = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    k = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[1.0], [0.0]]).view(1, 1, 2, 1)
    weight = math.exp(2 / math.sqrt(2)) / (math.exp(2 / math.sqrt(2)) + 1)  # softmax([sqrt 2, 0])[0]
    out = online_softmax_attention(q, k, v, block_size=1)
    assert out.item() == pytest.approx(weight, abs=1e-6)


@pytest.mark.parametrize("chunked", [chunked_attention, online_softmax_attention])
def test_chunked_forward_memory_is_linear_in_length(chunked) -> None:
    # The largest saved tensor is (B, H, block, S) at most, not (B, H, T, T): measure by a saved-tensor hook.
    sizes = []
    q, k, v = (torch.randn(1, 1, 512, 8) for _ in range(3))
    with torch.autograd.graph.saved_tensors_hooks(lambda x: sizes.append(x.numel()) or x, lambda x: x):
        q.requires_grad_()
        chunked(q, k, v, causal=True, block_size=64)
    assert max(sizes) <= 512 * 64


def test_mha_with_chunked_core_equals_sdpa_core() -> None:
    fast = MultiHeadAttention(16, 4)
    chunked = MultiHeadAttention(16, 4, core="chunked")
    chunked.load_state_dict(fast.state_dict())
    x = torch.randn(2, 300, 16)
    torch.testing.assert_close(chunked(x, causal=True), fast(x, causal=True), atol=1e-5, rtol=1e-5)


# --- sparse -------------------------------------------------------------------------------------------


def test_sparse_mask_hand_worked() -> None:
    # window 1, global token 0: a band of width 3 plus the first row and column.
    expected = [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 0, 1, 1, 1],
        [1, 0, 0, 1, 1],
    ]
    assert sparse_mask(5, window=1, n_global=1).int().tolist() == expected


@pytest.mark.parametrize(("t", "s"), [(50, 50), (23, 50)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("window", "n_global"), [(3, 0), (5, 2), (0, 1), (100, 0)])
def test_sparse_equals_dense_with_its_mask(t: int, s: int, causal: bool, window: int, n_global: int) -> None:
    q, k, v = _qkv(t, s)
    keep = torch.rand(B, s) > 0.2
    mask = padding_mask(keep)
    pattern = sparse_mask(t, s, window=window, n_global=n_global)
    ref = attention_math(q, k, v, pattern & mask, causal=causal)
    out = sparse_attention(q, k, v, mask, causal=causal, window=window, n_global=n_global, block_size=8)
    _assert_same(out, ref, [q, k, v])


def test_sparse_bad_config() -> None:
    q, k, v = _qkv(4, 4)
    with pytest.raises(ConfigError, match="window >= 0"):
        sparse_attention(q, k, v, window=-1)


# --- linear -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("t", "s"), [(30, 30), (12, 30)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_linear_equals_quadratic_kernel_reference(t: int, s: int, causal: bool, padded: bool) -> None:
    q, k, v = _qkv(t, s)
    mask = padding_mask(torch.rand(B, s) > 0.3) if padded else None
    out = linear_attention(q, k, v, mask, causal=causal)
    _assert_same(out, linear_attention_math(q, k, v, mask, causal=causal), [q, k, v])


def test_linear_hand_worked() -> None:
    # phi(0) = 1 for every channel, so all keys weigh the same: the output is the mean of the values.
    q = k = torch.zeros(1, 1, 3, 2)
    v = torch.tensor([1.0, 2.0, 6.0]).view(1, 1, 3, 1)
    assert linear_attention(q, k, v).flatten().tolist() == pytest.approx([3.0, 3.0, 3.0])
    assert linear_attention(q, k, v, causal=True).flatten().tolist() == pytest.approx([1.0, 1.5, 3.0])


def test_linear_refuses_masks_it_cannot_express() -> None:
    q, k, v = _qkv(4, 4)
    with pytest.raises(ConfigError, match=r"only a boolean key-padding mask \(B, 1, 1, S\).*shape \(4, 4\)"):
        linear_attention(q, k, v, torch.ones(4, 4, dtype=torch.bool))


# --- sliding window -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("t", "s"), [(40, 40), (9, 40)])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_equals_dense_attention_under_its_band(t: int, s: int, causal: bool) -> None:
    from fmblocks.blocks.efficient import SlidingWindowCore

    q, k, v = _qkv(t, s)
    keep = torch.rand(B, s) > 0.2
    query = torch.arange(s - t, s)[:, None]
    band = (query - torch.arange(s)[None, :]).abs() < 6  # the 6 most recent positions (itself included)
    ref = attention_math(q, k, v, band & padding_mask(keep), causal=causal)
    _assert_same(SlidingWindowCore(window=6, block_size=8)(q, k, v, padding_mask(keep), causal=causal), ref, [q, k, v])


def test_sliding_window_of_one_sees_only_itself() -> None:
    from fmblocks.blocks.efficient import SlidingWindowCore

    q, k, v = _qkv(5, 5)
    torch.testing.assert_close(SlidingWindowCore(window=1)(q, k, v, causal=True), v)


# --- flex ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "reference"), [("local-global", "sparse"), ("sliding-window", "sliding-window")])
@pytest.mark.parametrize(("t", "s", "causal"), [(40, 40, False), (40, 40, True), (24, 56, True)])
def test_flex_equals_sparse_cores(pattern: str, reference: str, t: int, s: int, causal: bool) -> None:
    from fmblocks.blocks.flex import FlexCore

    options = {"window": 5} | ({"n_global": 2} if pattern == "local-global" else {})
    flex, ref = FlexCore(pattern=pattern, compile=False, **options), ATTENTION_CORES.get(reference)(**options)
    q, k, v = _qkv(t, s)
    _assert_same(flex(q, k, v, causal=causal), ref(q, k, v, causal=causal), [q, k, v])  # CPU backward: sparse path
    with torch.no_grad():  # the FlexAttention kernel
        torch.testing.assert_close(flex(q, k, v, causal=causal), ref(q, k, v, causal=causal), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flex.weights(q, k, causal=causal), ref.weights(q, k, causal=causal))
    mask = padding_mask(torch.rand(B, s) > 0.2)  # a user mask takes the sparse path: the same function
    torch.testing.assert_close(flex(q, k, v, mask, causal=causal), ref(q, k, v, mask, causal=causal))


def test_flex_bad_pattern() -> None:
    from fmblocks.blocks.flex import FlexCore

    with pytest.raises(ConfigError, match="local-global"):
        FlexCore(pattern="dilated")
