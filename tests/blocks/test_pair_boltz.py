"""Parity of fmblocks.blocks.pair with Boltz's modules (an open AlphaFold 3 reproduction), weights copied.

Skipped unless `boltz` is importable. Boltz 2.2.1 pins numpy<2 (and a dozen heavy packages), so it is not
a test extra of this project; the test runs in a scratch environment with `pip install --no-deps boltz==2.2.1`
plus torch, numpy, scipy and einops. Boltz's layers are AlphaFold 3's: every Linear bias-free (`bias=False`),
the triangle-update width equal to c_z, single heads of c_s / H channels.
"""

import pytest
import torch

pytest.importorskip("boltz.model.layers.pairformer")

from boltz.model.layers.attention import AttentionPairBias as BoltzAttentionPairBias  # noqa: E402
from boltz.model.layers.outer_product_mean import OuterProductMean as BoltzOuterProductMean  # noqa: E402
from boltz.model.layers.pairformer import PairformerLayer as BoltzPairformerLayer  # noqa: E402
from boltz.model.layers.transition import Transition as BoltzTransition  # noqa: E402
from boltz.model.layers.triangular_attention.attention import (  # noqa: E402
    TriangleAttentionEndingNode as BoltzTriangleAttentionEndingNode,
)
from boltz.model.layers.triangular_attention.attention import (  # noqa: E402
    TriangleAttentionStartingNode as BoltzTriangleAttentionStartingNode,
)
from boltz.model.layers.triangular_mult import (  # noqa: E402
    TriangleMultiplicationIncoming as BoltzTriangleMultiplicationIncoming,
)
from boltz.model.layers.triangular_mult import (  # noqa: E402
    TriangleMultiplicationOutgoing as BoltzTriangleMultiplicationOutgoing,
)

from fmblocks.blocks.pair import (  # noqa: E402
    AttentionPairBias,
    OuterProductMean,
    PairformerBlock,
    Transition,
    TriangleAttention,
    TriangleAttentionEndingNode,
    TriangleAttentionStartingNode,
    TriangleMultiplication,
    TriangleMultiplicationIncoming,
    TriangleMultiplicationOutgoing,
)

B, S, N, C_M, C_Z, C_S, HEADS = 2, 3, 7, 8, 8, 12, 3
TOL = dict(atol=1e-5, rtol=1e-5)


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.4)
    return module.eval()


def data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(B, N)
    mask[1, -2:] = 0
    msa_mask = mask[:, None, :].repeat(1, S, 1)
    msa_mask[0, 2, 1] = 0
    return {
        "z": torch.randn(B, N, N, C_Z, generator=g), "m": torch.randn(B, S, N, C_M, generator=g),
        "s": torch.randn(B, N, C_S, generator=g), "mask": mask, "msa_mask": msa_mask,
        "pair_mask": mask[:, :, None] * mask[:, None, :],
    }


def norm(prefix: str, ln: torch.nn.LayerNorm) -> dict:
    return {f"{prefix}.weight": ln.weight, f"{prefix}.bias": ln.bias}


def triangle_multiplication_weights(t: TriangleMultiplication) -> dict:
    return {
        **norm("norm_in", t.norm_in), **norm("norm_out", t.norm_out),
        "p_in.weight": torch.cat([t.a_proj.weight, t.b_proj.weight]),  # Boltz fuses a|b in one projection
        "g_in.weight": torch.cat([t.a_gate.weight, t.b_gate.weight]),
        "p_out.weight": t.out.weight, "g_out.weight": t.gate.weight,
    }


def triangle_attention_weights(t: TriangleAttention) -> dict:
    a = t.attention
    return {
        **norm("layer_norm", t.norm), "linear.weight": t.pair_bias.weight,
        "mha.linear_q.weight": a.q_proj.weight, "mha.linear_k.weight": a.k_proj.weight,
        "mha.linear_v.weight": a.v_proj.weight, "mha.linear_g.weight": a.gate.weight, "mha.linear_o.weight": a.out.weight,
    }


def transition_weights(t: Transition) -> dict:
    return {**norm("norm", t.norm), "fc1.weight": t.fc_in.weight, "fc2.weight": t.fc_gate.weight, "fc3.weight": t.fc_out.weight}


def attention_pair_bias_weights(t: AttentionPairBias, norm_s: str | None = "norm_s") -> dict:
    a = t.attention
    weights = {
        "proj_q.weight": a.q_proj.weight, "proj_q.bias": a.q_proj.bias, "proj_k.weight": a.k_proj.weight,
        "proj_v.weight": a.v_proj.weight, "proj_g.weight": a.gate.weight, "proj_o.weight": a.out.weight,
        **norm("proj_z.0", t.norm_z), "proj_z.1.weight": t.pair_bias.weight,
    }
    return {**norm(norm_s, t.norm_s), **weights} if norm_s else weights


def prefixed(prefix: str, weights: dict) -> dict:
    return {f"{prefix}.{k}": v for k, v in weights.items()}


@pytest.mark.parametrize("direction", ["outgoing", "incoming"])
def test_triangle_multiplication_matches_boltz(direction: str) -> None:
    ours = randomize((TriangleMultiplicationOutgoing if direction == "outgoing" else TriangleMultiplicationIncoming)(C_Z, C_Z, bias=False))
    theirs = (BoltzTriangleMultiplicationOutgoing if direction == "outgoing" else BoltzTriangleMultiplicationIncoming)(C_Z)
    theirs.load_state_dict(triangle_multiplication_weights(ours))
    x = data()
    with torch.no_grad():
        torch.testing.assert_close(ours(x["z"], x["mask"], chunk_size=3), theirs(x["z"], x["pair_mask"]), **TOL)


@pytest.mark.parametrize("node", ["starting", "ending"])
def test_triangle_attention_matches_boltz(node: str) -> None:
    ours = randomize((TriangleAttentionStartingNode if node == "starting" else TriangleAttentionEndingNode)(C_Z, 4, 2, bias=False))
    theirs = (BoltzTriangleAttentionStartingNode if node == "starting" else BoltzTriangleAttentionEndingNode)(C_Z, 4, 2)
    theirs.load_state_dict(triangle_attention_weights(ours))
    x = data()
    with torch.no_grad():
        expected = theirs(x["z"], x["pair_mask"], chunk_size=2)
        torch.testing.assert_close(ours(x["z"], x["mask"]), expected, **TOL)
        torch.testing.assert_close(ours(x["z"], x["mask"], chunk_size=3), expected, **TOL)


def test_outer_product_mean_matches_boltz() -> None:
    ours = randomize(OuterProductMean(C_M, C_Z, 3, bias=False))
    theirs = BoltzOuterProductMean(C_M, 3, C_Z)
    theirs.load_state_dict({**norm("norm", ours.norm), "proj_a.weight": ours.a_proj.weight, "proj_b.weight": ours.b_proj.weight,
                            "proj_o.weight": ours.out.weight, "proj_o.bias": ours.out.bias})
    x = data()
    with torch.no_grad():
        torch.testing.assert_close(ours(x["m"], x["msa_mask"], chunk_size=2), theirs(x["m"], x["msa_mask"]), **TOL)


def test_transition_matches_boltz() -> None:
    ours = randomize(Transition(C_Z, 4, kind="swiglu"))
    theirs = BoltzTransition(C_Z, 4 * C_Z)
    theirs.load_state_dict(transition_weights(ours))
    x = data()
    with torch.no_grad():
        torch.testing.assert_close(ours(x["z"], chunk_size=5), theirs(x["z"]), **TOL)


def test_attention_pair_bias_matches_boltz() -> None:
    ours = randomize(AttentionPairBias(C_S, C_Z, C_S // HEADS, HEADS))
    theirs = BoltzAttentionPairBias(C_S, C_Z, HEADS)
    theirs.load_state_dict(attention_pair_bias_weights(ours))
    x = data()
    with torch.no_grad():
        torch.testing.assert_close(ours(x["s"], x["z"], x["mask"]), theirs(x["s"], x["z"], x["mask"]), **TOL)


def test_pairformer_block_matches_boltz() -> None:
    ours = randomize(PairformerBlock(C_S, C_Z, single_heads=HEADS, single_head_dim=C_S // HEADS, pair_heads=2,
                                     pair_head_dim=4, triangle_dim=C_Z))
    theirs = BoltzPairformerLayer(C_S, C_Z, HEADS, 0.0, 4, 2, v2=True).eval()
    theirs.load_state_dict({
        **prefixed("tri_mul_out", triangle_multiplication_weights(ours.triangle_out)),
        **prefixed("tri_mul_in", triangle_multiplication_weights(ours.triangle_in)),
        **prefixed("tri_att_start", triangle_attention_weights(ours.triangle_start)),
        **prefixed("tri_att_end", triangle_attention_weights(ours.triangle_end)),
        **prefixed("transition_z", transition_weights(ours.pair_transition)),
        **prefixed("transition_s", transition_weights(ours.single_transition)),
        **norm("pre_norm_s", ours.single_attention.norm_s),  # Boltz normalises s before its attention
        **prefixed("attention", attention_pair_bias_weights(ours.single_attention, norm_s=None)),
    })
    x = data()
    with torch.no_grad():
        s, z = ours(x["s"], x["z"], x["mask"], chunk_size=3)
        s_ref, z_ref = theirs(x["s"], x["z"], x["mask"], x["pair_mask"])
    torch.testing.assert_close(z, z_ref, **TOL)
    torch.testing.assert_close(s, s_ref, **TOL)
