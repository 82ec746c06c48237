"""TransformerBlock: identity hand-worked example, parity with torch.nn.TransformerEncoderLayer /
TransformerDecoderLayer, causality, intermediates, bad input."""

import pytest
import torch
import torch.nn.functional as F

from fmblocks.blocks.attention import KVCache, MultiHeadAttention, padding_mask
from fmblocks.blocks.block import TransformerBlock
from fmblocks.blocks.positional import build_positions
from fmblocks.errors import ConfigError, UnknownNameError

D, HEADS, FF = 16, 4, 32


def _copy_attention(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention) -> None:
    wq, wk, wv = ref.in_proj_weight.chunk(3)
    bq, bk, bv = ref.in_proj_bias.chunk(3)
    for proj, w, b in [(ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)]:
        proj.weight.copy_(w)
        proj.bias.copy_(b)
    ours.o_proj.load_state_dict(ref.out_proj.state_dict())


def _randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_encoder_block_matches_torch(norm_first: bool) -> None:
    ref = torch.nn.TransformerEncoderLayer(
        D, HEADS, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    _randomise(ref)
    ours = TransformerBlock(D, HEADS, FF, norm_first=norm_first)
    with torch.no_grad():
        _copy_attention(ours.attn, ref.self_attn)
        ours.ffn.fc_in.load_state_dict(ref.linear1.state_dict())
        ours.ffn.fc_out.load_state_dict(ref.linear2.state_dict())
        ours.norm1.load_state_dict(ref.norm1.state_dict())
        ours.norm2.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(2, 6, D)
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    expected = ref(x, src_key_padding_mask=~keep)
    torch.testing.assert_close(ours(x, mask=padding_mask(keep)), expected, atol=1e-5, rtol=1e-5)
    future = torch.nn.Transformer.generate_square_subsequent_mask(6)
    torch.testing.assert_close(ours(x, causal=True), ref(x, src_mask=future, is_causal=True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_decoder_block_with_cross_attention_matches_torch(norm_first: bool) -> None:
    ref = torch.nn.TransformerDecoderLayer(
        D, HEADS, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    _randomise(ref)
    ours = TransformerBlock(D, HEADS, FF, norm_first=norm_first, cross_attention=True)
    with torch.no_grad():
        _copy_attention(ours.attn, ref.self_attn)
        _copy_attention(ours.cross_attn, ref.multihead_attn)
        ours.ffn.fc_in.load_state_dict(ref.linear1.state_dict())
        ours.ffn.fc_out.load_state_dict(ref.linear2.state_dict())
        ours.norm1.load_state_dict(ref.norm1.state_dict())
        ours.norm_cross.load_state_dict(ref.norm2.state_dict())
        ours.norm2.load_state_dict(ref.norm3.state_dict())
    x, memory = torch.randn(2, 5, D), torch.randn(2, 8, D)
    memory_keep = torch.ones(2, 8, dtype=torch.bool)
    memory_keep[1, 6:] = False
    future = torch.nn.Transformer.generate_square_subsequent_mask(5)
    expected = ref(x, memory, tgt_mask=future, tgt_is_causal=True, memory_key_padding_mask=~memory_keep)
    y = ours(x, causal=True, context=memory, context_mask=padding_mask(memory_keep))
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


def test_block_with_silent_sublayers_is_identity_or_double_norm() -> None:
    # Hand-worked: zero output projections make every sublayer output 0, so a pre-norm block returns x
    # and a post-norm block returns norm2(norm1(x)) (unit gain, zero bias): LayerNorm applied twice.
    x = torch.randn(2, 4, D)
    for norm_first in (True, False):
        block = TransformerBlock(D, HEADS, FF, norm_first=norm_first)
        with torch.no_grad():
            for linear in (block.attn.o_proj, block.ffn.fc_out):
                linear.weight.zero_()
                linear.bias.zero_()
        expected = x if norm_first else F.layer_norm(F.layer_norm(x, (D,)), (D,))
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "options",
    [{}, {"positional": build_positions("rope", max_len=8, d_model=D, n_heads=HEADS), "norm": "rms", "ffn": "swiglu"},
     {"positional": build_positions("alibi", max_len=8, d_model=D, n_heads=HEADS), "n_kv_heads": 2}],
    ids=["gpt", "llama", "alibi-gqa"],
)
def test_changing_a_future_token_never_changes_earlier_outputs(options: dict) -> None:
    block = TransformerBlock(D, HEADS, FF, **options)
    x = torch.randn(1, 8, D)
    y = block(x, causal=True)
    for j in range(8):
        x2 = x.clone()
        x2[:, j] = torch.randn(D)
        y2 = block(x2, causal=True)
        assert torch.equal(y2[:, :j], y[:, :j]), f"position {j} leaked into earlier outputs"
        assert not torch.allclose(y2[:, j], y[:, j])


def test_block_kv_cache_and_intermediates() -> None:
    block = TransformerBlock(D, HEADS, FF, positional=build_positions("rope", max_len=8, d_model=D, n_heads=HEADS))
    x = torch.randn(2, 5, D)
    y, seen = block(x, causal=True, return_intermediates=True)
    assert seen["attention"].shape == (2, HEADS, 5, 5) and seen["cross_attention"] is None
    assert seen["mlp"].shape == (2, 5, FF)
    assert torch.equal(seen["attention"].triu(1), torch.zeros(2, HEADS, 5, 5))  # causal weights
    torch.testing.assert_close(y, block(x, causal=True), atol=1e-5, rtol=1e-5)
    cache = KVCache()
    steps = torch.cat([block(x[:, :3], causal=True, cache=cache), block(x[:, 3:], causal=True, cache=cache)], 1)
    torch.testing.assert_close(steps, y, atol=1e-5, rtol=1e-5)


def test_fully_masked_row_in_a_block_gives_no_nan() -> None:
    block = TransformerBlock(D, HEADS, FF)
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[1] = False
    y = block(torch.randn(1, 5, D), mask=mask)
    assert torch.isfinite(y).all()


def test_bad_input() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown norm 'batch'; known: layer, rms"):
        TransformerBlock(D, HEADS, FF, norm="batch")
    with pytest.raises(UnknownNameError, match=r"unknown feed-forward 'moe'"):
        TransformerBlock(D, HEADS, FF, ffn="moe")
    with pytest.raises(UnknownNameError, match=r"unknown activation 'elu'"):
        TransformerBlock(D, HEADS, FF, activation="elu")
    with pytest.raises(UnknownNameError, match=r"unknown attention core 'flash'"):
        TransformerBlock(D, HEADS, FF, attention="flash")
    with pytest.raises(ConfigError, match="d_model must be divisible by n_heads"):
        TransformerBlock(18, HEADS, FF)
    with pytest.raises(ConfigError, match="needs context="):
        TransformerBlock(D, HEADS, FF, cross_attention=True)(torch.randn(1, 2, D))
    with pytest.raises(ConfigError, match="refuses it"):
        TransformerBlock(D, HEADS, FF)(torch.randn(1, 2, D), context=torch.randn(1, 2, D))
