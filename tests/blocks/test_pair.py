"""AlphaFold pair operators: hand-worked values, parity with einsum transcriptions of the published
pseudo-code (AF2 supplement Algorithms 6-15, AF3 Algorithms 11, 17, 24), and properties: residue
permutation equivariance, incoming = outgoing on the transposed pair, padding never reaches real
residues, chunked = unchunked. Parity with Boltz's modules lives in test_pair_boltz.py.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from fmblocks.blocks.pair import (
    AttentionPairBias,
    EvoformerBlock,
    MSAColumnAttention,
    MSARowAttentionWithPairBias,
    OuterProductMean,
    PairformerBlock,
    PairformerStack,
    Transition,
    TriangleAttention,
    TriangleAttentionEndingNode,
    TriangleAttentionStartingNode,
    TriangleMultiplication,
    TriangleMultiplicationIncoming,
    TriangleMultiplicationOutgoing,
    attend,
)
from fmblocks.errors import ConfigError

B, S, N, C_M, C_Z, C_S = 2, 3, 6, 8, 8, 12
TOL = dict(atol=1e-5, rtol=1e-5)


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random biases and LayerNorm gains too, so that no term of the equations is silently zero or one."""
    torch.manual_seed(seed)
    for name, p in module.named_parameters():
        if p.dim() == 1:
            with torch.no_grad():
                p.normal_(1.0 if "norm" in name and name.endswith("weight") else 0.0, 0.5)  # gains near 1
    return module.eval()


def inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, N)
    mask[1, -2:] = 0  # the second example has two padding residues
    msa_mask = mask[:, None, :].repeat(1, S, 1)
    msa_mask[0, 1, 2] = 0  # and a gap in one sequence
    return {
        "m": torch.randn(B, S, N, C_M, generator=g),
        "z": torch.randn(B, N, N, C_Z, generator=g),
        "s": torch.randn(B, N, C_S, generator=g),
        "mask": mask,
        "msa_mask": msa_mask,
    }


# ---- the published algorithms, transcribed with einsum (the reference) ---------------------------------------------


def lin(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


def ln(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def heads(x: torch.Tensor, h: int) -> torch.Tensor:
    return x.unflatten(-1, (h, -1))  # (..., H*c) -> (..., H, c)


def neg(mask: torch.Tensor) -> torch.Tensor:
    return (mask - 1) * 1e9


def ref_triangle_multiplication(mod: TriangleMultiplication, z, mask):
    """Alg 11 / 12, each written with its own einsum."""
    z = ln(z, mod.norm_in)
    pm = (mask[:, :, None] * mask[:, None, :])[..., None]
    a = torch.sigmoid(lin(z, mod.a_gate)) * lin(z, mod.a_proj) * pm
    b = torch.sigmoid(lin(z, mod.b_gate)) * lin(z, mod.b_proj) * pm
    g = torch.sigmoid(lin(z, mod.gate))
    if mod.direction == "outgoing":
        x = torch.einsum("bikc,bjkc->bijc", a, b)
    else:
        x = torch.einsum("bkic,bkjc->bijc", a, b)
    return g * lin(ln(x, mod.norm_out), mod.out)


def ref_triangle_attention(mod: TriangleAttention, z, mask):
    """Alg 13 (starting node) / Alg 14 (ending node), each written out without transposing z."""
    att, h = mod.attention, mod.attention.n_heads
    z = ln(z, mod.norm)
    q, k, v = (heads(lin(z, p), h) for p in (att.q_proj, att.k_proj, att.v_proj))  # (B, N, N, H, c)
    bias = lin(z, mod.pair_bias)  # (B, N, N, H)
    g = heads(torch.sigmoid(lin(z, att.gate)), h)
    pm = mask[:, :, None] * mask[:, None, :]
    scale = 1 / math.sqrt(q.shape[-1])
    if mod.node == "starting":  # a_ijk = softmax_k(q_ij.k_ik + b_jk), keys (i, k)
        logits = torch.einsum("bijhc,bikhc->bhijk", q, k) * scale
        logits = logits + bias.permute(0, 3, 1, 2)[:, :, None] + neg(pm)[:, None, :, None, :]
        o = torch.einsum("bhijk,bikhc->bijhc", logits.softmax(-1), v)
    else:  # a_ijk = softmax_k(q_ij.k_kj + b_ki), keys (k, j)
        logits = torch.einsum("bijhc,bkjhc->bhijk", q, k) * scale
        logits = logits + bias.permute(0, 3, 2, 1)[:, :, :, None, :] + neg(pm.transpose(1, 2))[:, None, None]
        o = torch.einsum("bhijk,bkjhc->bijhc", logits.softmax(-1), v)
    return lin((g * o).flatten(-2), att.out)


def ref_msa_row(mod: MSARowAttentionWithPairBias, m, z, msa_mask):
    """Alg 7."""
    att, h = mod.attention, mod.attention.n_heads
    m = ln(m, mod.norm_m)
    q, k, v = (heads(lin(m, p), h) for p in (att.q_proj, att.k_proj, att.v_proj))  # (B, S, N, H, c)
    bias = lin(ln(z, mod.norm_z), mod.pair_bias)  # b_ij^h (B, N, N, H)
    logits = torch.einsum("bsihc,bsjhc->bshij", q, k) / math.sqrt(q.shape[-1])
    logits = logits + bias.permute(0, 3, 1, 2)[:, None] + neg(msa_mask)[:, :, None, None, :]
    o = torch.einsum("bshij,bsjhc->bsihc", logits.softmax(-1), v)
    return lin((heads(torch.sigmoid(lin(m, att.gate)), h) * o).flatten(-2), att.out)


def ref_msa_column(mod: MSAColumnAttention, m, msa_mask):
    """Alg 8."""
    att, h = mod.attention, mod.attention.n_heads
    m = ln(m, mod.norm)
    q, k, v = (heads(lin(m, p), h) for p in (att.q_proj, att.k_proj, att.v_proj))
    logits = torch.einsum("bsihc,btihc->bihst", q, k) / math.sqrt(q.shape[-1])
    logits = logits + neg(msa_mask.transpose(1, 2))[:, :, None, None, :]
    o = torch.einsum("bihst,btihc->bsihc", logits.softmax(-1), v)
    return lin((heads(torch.sigmoid(lin(m, att.gate)), h) * o).flatten(-2), att.out)


def ref_outer_product_mean(mod: OuterProductMean, m, msa_mask):
    """Alg 10, the mean over the sequences where both residues are real."""
    m = ln(m, mod.norm)
    a, b = lin(m, mod.a_proj) * msa_mask[..., None], lin(m, mod.b_proj) * msa_mask[..., None]
    total = torch.einsum("bsic,bsjd->bijcd", a, b)
    count = torch.einsum("bsi,bsj->bij", msa_mask, msa_mask).clamp(min=1)
    return lin((total / count[..., None, None]).flatten(-2), mod.out)


def ref_transition(mod: Transition, x):
    """Alg 9/15 (relu) or AF3 Alg 11 (swiglu)."""
    x = ln(x, mod.norm)
    if mod.kind == "relu":
        return lin(torch.relu(lin(x, mod.fc_in)), mod.fc_out)
    return lin(F.silu(lin(x, mod.fc_in)) * lin(x, mod.fc_gate), mod.fc_out)


def ref_attention_pair_bias(mod: AttentionPairBias, s, z, mask):
    """AF3 Alg 24 with no conditioning and beta = 0."""
    att, h = mod.attention, mod.attention.n_heads
    s = ln(s, mod.norm_s)
    q, k, v = (heads(lin(s, p), h) for p in (att.q_proj, att.k_proj, att.v_proj))  # (B, N, H, c)
    bias = lin(ln(z, mod.norm_z), mod.pair_bias)
    logits = torch.einsum("bihc,bjhc->bhij", q, k) / math.sqrt(q.shape[-1])
    logits = logits + bias.permute(0, 3, 1, 2) + neg(mask)[:, None, None, :]
    o = torch.einsum("bhij,bjhc->bihc", logits.softmax(-1), v)
    return lin((heads(torch.sigmoid(lin(s, att.gate)), h) * o).flatten(-2), att.out)


def ref_evoformer(blk: EvoformerBlock, m, z, msa_mask, mask):
    """Alg 6."""
    m = m + ref_msa_row(blk.msa_row, m, z, msa_mask)
    m = m + ref_msa_column(blk.msa_column, m, msa_mask)
    m = m + ref_transition(blk.msa_transition, m)
    z = z + ref_outer_product_mean(blk.outer_product_mean, m, msa_mask)
    z = z + ref_triangle_multiplication(blk.triangle_out, z, mask)
    z = z + ref_triangle_multiplication(blk.triangle_in, z, mask)
    z = z + ref_triangle_attention(blk.triangle_start, z, mask)
    z = z + ref_triangle_attention(blk.triangle_end, z, mask)
    return m, z + ref_transition(blk.pair_transition, z)


def ref_pairformer(blk: PairformerBlock, s, z, mask):
    """AF3 Alg 17, one block."""
    z = z + ref_triangle_multiplication(blk.triangle_out, z, mask)
    z = z + ref_triangle_multiplication(blk.triangle_in, z, mask)
    z = z + ref_triangle_attention(blk.triangle_start, z, mask)
    z = z + ref_triangle_attention(blk.triangle_end, z, mask)
    z = z + ref_transition(blk.pair_transition, z)
    s = s + ref_attention_pair_bias(blk.single_attention, s, z, mask)
    return s + ref_transition(blk.single_transition, s), z


# ---- every operator as (module, call(inputs, chunk_size), reference(inputs)) ---------------------------------------

SMALL = dict(msa_heads=2, msa_head_dim=4, pair_heads=2, pair_head_dim=4, triangle_dim=6, outer_dim=3)
PAIRFORMER = dict(single_heads=3, single_head_dim=4, pair_heads=2, pair_head_dim=4, triangle_dim=6)


def operators() -> dict:
    """name -> (module, run(x, chunk) -> tuple of outputs, reference(x) -> tuple of outputs)."""
    tm_out, tm_in = TriangleMultiplicationOutgoing(C_Z, 6), TriangleMultiplicationIncoming(C_Z, 6, bias=False)
    ta_start, ta_end = TriangleAttentionStartingNode(C_Z, 4, 2), TriangleAttentionEndingNode(C_Z, 4, 2, bias=False)
    row, col = MSARowAttentionWithPairBias(C_M, C_Z, 4, 2), MSAColumnAttention(C_M, 4, 2)
    opm, pair_tr = OuterProductMean(C_M, C_Z, 3), Transition(C_Z, 2)
    single_tr, apb = Transition(C_S, 2, kind="swiglu"), AttentionPairBias(C_S, C_Z, 4, 3)
    evo, pf = EvoformerBlock(C_M, C_Z, **SMALL), PairformerBlock(C_S, C_Z, **PAIRFORMER)
    ops = {
        "triangle_mult_outgoing": (tm_out, lambda x, c: (tm_out(x["z"], x["mask"], chunk_size=c),),
                                   lambda x: (ref_triangle_multiplication(tm_out, x["z"], x["mask"]),)),
        "triangle_mult_incoming": (tm_in, lambda x, c: (tm_in(x["z"], x["mask"], chunk_size=c),),
                                   lambda x: (ref_triangle_multiplication(tm_in, x["z"], x["mask"]),)),
        "triangle_att_starting": (ta_start, lambda x, c: (ta_start(x["z"], x["mask"], chunk_size=c),),
                                  lambda x: (ref_triangle_attention(ta_start, x["z"], x["mask"]),)),
        "triangle_att_ending": (ta_end, lambda x, c: (ta_end(x["z"], x["mask"], chunk_size=c),),
                                lambda x: (ref_triangle_attention(ta_end, x["z"], x["mask"]),)),
        "msa_row": (row, lambda x, c: (row(x["m"], x["z"], x["msa_mask"], chunk_size=c),),
                    lambda x: (ref_msa_row(row, x["m"], x["z"], x["msa_mask"]),)),
        "msa_column": (col, lambda x, c: (col(x["m"], x["msa_mask"], chunk_size=c),),
                       lambda x: (ref_msa_column(col, x["m"], x["msa_mask"]),)),
        "outer_product_mean": (opm, lambda x, c: (opm(x["m"], x["msa_mask"], chunk_size=c),),
                               lambda x: (ref_outer_product_mean(opm, x["m"], x["msa_mask"]),)),
        "pair_transition": (pair_tr, lambda x, c: (pair_tr(x["z"], chunk_size=c),), lambda x: (ref_transition(pair_tr, x["z"]),)),
        "single_transition": (single_tr, lambda x, c: (single_tr(x["s"], chunk_size=c),),
                              lambda x: (ref_transition(single_tr, x["s"]),)),
        "attention_pair_bias": (apb, lambda x, c: (apb(x["s"], x["z"], x["mask"], chunk_size=c),),
                                lambda x: (ref_attention_pair_bias(apb, x["s"], x["z"], x["mask"]),)),
        "evoformer": (evo, lambda x, c: evo(x["m"], x["z"], x["msa_mask"], x["mask"], chunk_size=c),
                      lambda x: ref_evoformer(evo, x["m"], x["z"], x["msa_mask"], x["mask"])),
        "pairformer": (pf, lambda x, c: pf(x["s"], x["z"], x["mask"], chunk_size=c),
                       lambda x: ref_pairformer(pf, x["s"], x["z"], x["mask"])),
    }
    for seed, (module, _, _) in enumerate(ops.values()):
        randomized(module, seed)
    return ops


OPS = operators()


def assert_all_close(got, expected, **tol) -> None:
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **(tol or TOL))


# ---- hand-worked -----------------------------------------------------------------------------------------------------


def test_attend_hand_worked() -> None:
    # one query, two keys with logits 0 and ln 3 -> weights 1/4, 3/4; masking the second key leaves weight 1 on the first
    q = torch.tensor([[[[1.0]]]])  # (1, 1, 1, c=1)
    k = torch.tensor([[[[0.0], [math.log(3.0)]]]])  # (1, 1, 2, 1)
    v = torch.tensor([[[[4.0], [8.0]]]])
    torch.testing.assert_close(attend(q, k, v), torch.tensor([[[[0.25 * 4 + 0.75 * 8]]]]))
    torch.testing.assert_close(attend(q, k, v, key_mask=torch.tensor([[1.0, 0.0]])), torch.tensor([[[[4.0]]]]))
    bias = torch.tensor([[[[math.log(3.0), 0.0]]]])  # cancels the logits: equal weights
    torch.testing.assert_close(attend(q, k, v, bias), torch.tensor([[[[6.0]]]]))


def test_outer_product_mean_hand_worked() -> None:
    # c_m = 2: LayerNorm sends [1, 0] to +-r [1, -1] with r = 0.5 / sqrt(0.25 + eps); a = b = first channel
    opm = OuterProductMean(2, 1, 1)
    with torch.no_grad():
        opm.norm.weight.fill_(1.0), opm.norm.bias.zero_()
        for p in (opm.a_proj, opm.b_proj):
            p.weight.copy_(torch.tensor([[1.0, 0.0]])), p.bias.zero_()
        opm.out.weight.fill_(1.0), opm.out.bias.zero_()
    up, down = [1.0, 0.0], [0.0, 1.0]  # a = +r and a = -r
    m = torch.tensor([[[up, down], [up, up]]])  # (B=1, S=2, N=2, 2): signs [[+, -], [+, +]]
    r2 = 0.25 / (0.25 + opm.norm.eps)
    # z_ij = mean_s sign_si sign_sj: z_00 = 1, z_01 = (-1 + 1) / 2 = 0, z_11 = 1
    torch.testing.assert_close(opm(m)[0, :, :, 0], torch.tensor([[1.0, 0.0], [0.0, 1.0]]) * r2)
    # drop residue 1 from sequence 2: z_01 and z_11 now average over sequence 1 alone
    msa_mask = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    torch.testing.assert_close(opm(m, msa_mask)[0, :, :, 0], torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) * r2)


# ---- parity with the transcribed algorithms --------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPS)
def test_matches_published_algorithm(name: str) -> None:
    _, run, reference = OPS[name]
    x = inputs()
    with torch.no_grad():
        assert_all_close(run(x, None), reference(x))


# ---- properties -----------------------------------------------------------------------------------------------------


def permuted(x: dict, perm: torch.Tensor) -> dict:
    return {
        "m": x["m"][:, :, perm], "z": x["z"][:, perm][:, :, perm], "s": x["s"][:, perm],
        "mask": x["mask"][:, perm], "msa_mask": x["msa_mask"][:, :, perm],
    }


def permute_output(y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    if y.dim() == 4 and y.shape[1] == y.shape[2] == N:  # pair (B, N, N, c)
        return y[:, perm][:, :, perm]
    return y[:, :, perm] if y.dim() == 4 else y[:, perm]  # MSA (B, S, N, c) or single (B, N, c)


@pytest.mark.parametrize("name", OPS)
def test_residue_permutation_equivariance(name: str) -> None:
    _, run, _ = OPS[name]
    x, perm = inputs(), torch.randperm(N, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = [permute_output(y, perm) for y in run(x, None)]
        assert_all_close(run(permuted(x, perm), None), expected)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("chunk", [1, 4])
def test_chunked_equals_unchunked(name: str, chunk: int) -> None:
    _, run, _ = OPS[name]
    x = inputs()
    with torch.no_grad():
        assert_all_close(run(x, chunk), run(x, None))


@pytest.mark.parametrize("name", OPS)
def test_padding_never_reaches_real_residues(name: str) -> None:
    """Run on example 1 (4 real residues + 2 padding of any content) and on its 4 real residues alone."""
    _, run, _ = OPS[name]
    x = inputs()
    real = 4
    one = {k: v[1:2] for k, v in x.items()}
    one["msa_mask"] = one["mask"][:, None, :].repeat(1, S, 1)
    trimmed = {"m": one["m"][:, :, :real], "z": one["z"][:, :real, :real], "s": one["s"][:, :real],
               "mask": one["mask"][:, :real], "msa_mask": one["msa_mask"][:, :, :real]}
    noisy = dict(one, m=one["m"].clone(), z=one["z"].clone(), s=one["s"].clone())
    noisy["m"][:, :, real:] *= 100
    noisy["z"][:, real:] = 50 * torch.randn_like(noisy["z"][:, real:])
    noisy["z"][:, :, real:] = 50 * torch.randn_like(noisy["z"][:, :, real:])
    noisy["s"][:, real:] *= -30
    with torch.no_grad():
        got, expected = run(noisy, None), run(trimmed, None)
    for y, e in zip(got, expected, strict=True):
        if y.dim() == 4 and y.shape[1] == y.shape[2]:
            y = y[:, :real, :real]
        else:
            y = y[:, :, :real] if y.dim() == 4 else y[:, :real]
        torch.testing.assert_close(y, e, **TOL)


@pytest.mark.parametrize("kind", ["multiplication", "attention"])
def test_incoming_is_outgoing_on_transposed_pair(kind: str) -> None:
    x = inputs()
    if kind == "multiplication":
        first = randomized(TriangleMultiplicationOutgoing(C_Z, 6), 5)
        second = TriangleMultiplicationIncoming(C_Z, 6)
    else:
        first = randomized(TriangleAttentionStartingNode(C_Z, 4, 2), 6)
        second = TriangleAttentionEndingNode(C_Z, 4, 2)
    weights = first.state_dict()
    if kind == "multiplication":  # sum_k a_ki b_kj = (sum_k b'_ik a'_jk)^T with ' on z^T: a and b trade places
        weights = {name.replace("a_", "@").replace("b_", "a_").replace("@", "b_"): w for name, w in weights.items()}
    second.load_state_dict(weights)
    with torch.no_grad():
        transposed_back = first(x["z"].transpose(1, 2), x["mask"]).transpose(1, 2)
        torch.testing.assert_close(second(x["z"], x["mask"]), transposed_back, **TOL)


def test_pairformer_stack_runs_its_blocks_in_turn() -> None:
    stack = randomized(PairformerStack(2, C_S, C_Z, **PAIRFORMER), 7)
    x = inputs()
    with torch.no_grad():
        s, z = x["s"], x["z"]
        for block in stack.blocks:
            s, z = ref_pairformer(block, s, z, x["mask"])
        assert_all_close(stack(x["s"], x["z"], x["mask"], chunk_size=3), (s, z))


def test_gradients_flow_through_chunked_evaluation() -> None:
    block = randomized(PairformerBlock(C_S, C_Z, **PAIRFORMER), 8).train()
    x = inputs()
    s, z = block(x["s"], x["z"], x["mask"], chunk_size=2)
    (s.square().mean() + z.square().mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


def test_bad_options_fail_loudly() -> None:
    with pytest.raises(ConfigError, match="outgoing, incoming"):
        TriangleMultiplication(C_Z, direction="sideways")
    with pytest.raises(ConfigError, match="starting, ending"):
        TriangleAttention(C_Z, node="middle")
    with pytest.raises(ConfigError, match="relu, swiglu"):
        Transition(C_Z, kind="gelu")
    with pytest.raises(ConfigError, match="chunk_size"):
        TriangleMultiplicationOutgoing(C_Z, 6)(inputs()["z"], chunk_size=0)


def test_triangle_operators_run_at_384_residues_in_chunks() -> None:
    """N = 384 with a small c_z: chunks of 48 rows/channels agree with the einsum transcription on a few rows."""
    torch.manual_seed(9)
    n = 384
    z, mask = torch.randn(1, n, n, 4), torch.ones(1, n)
    mask[:, -20:] = 0
    mult = randomized(TriangleMultiplicationOutgoing(4, 4), 9)
    attention = randomized(TriangleAttentionEndingNode(4, 2, 1), 10)
    with torch.no_grad():
        torch.testing.assert_close(mult(z, mask, chunk_size=2), ref_triangle_multiplication(mult, z, mask), **TOL)
        got = attention(z, mask, chunk_size=48)  # logits (1, N, 1, 48, N) instead of (1, N, 1, N, N)
        columns = slice(0, 8)  # the ending-node reference for 8 columns j: (1, N, 8, c) out of (1, N, N, c)
        att, zn = attention.attention, ln(z, attention.norm)
        q, k, v = (heads(lin(zn, p), 1) for p in (att.q_proj, att.k_proj, att.v_proj))
        logits = torch.einsum("bijhc,bkjhc->bhijk", q[:, :, columns], k[:, :, columns]) / math.sqrt(2)
        bias = lin(zn, attention.pair_bias).permute(0, 3, 2, 1)[:, :, :, None, :]  # b_ki -> (B, H, i, 1, k)
        pm = (mask[:, :, None] * mask[:, None, :]).transpose(1, 2)[:, None, None, columns]
        o = torch.einsum("bhijk,bkjhc->bijhc", (logits + bias + neg(pm)).softmax(-1), v[:, :, columns])
        expected = lin((heads(torch.sigmoid(lin(zn[:, :, columns], att.gate)), 1) * o).flatten(-2), att.out)
        torch.testing.assert_close(got[:, :, columns], expected, **TOL)
