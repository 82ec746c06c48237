"""Positions: sinusoidal table, learned table, RoPE and ALiBi — hand-worked values, references, properties."""

import math

import pytest
import torch

from fmblocks.blocks.positional import (
    POSITIONS,
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    alibi_bias,
    alibi_slopes,
    build_positions,
    sinusoidal_table,
)
from fmblocks.errors import ConfigError, ShapeError


def test_sinusoidal_hand_worked() -> None:
    # dim 4: frequencies 1 / 10000^(0/4) = 1 and 1 / 10000^(2/4) = 1/100
    table = sinusoidal_table(2, 4)
    expected = torch.tensor(
        [[0.0, 1.0, 0.0, 1.0], [math.sin(1.0), math.cos(1.0), math.sin(0.01), math.cos(0.01)]]
    )
    torch.testing.assert_close(table, expected)


def test_sinusoidal_rows_unique_and_bounded() -> None:
    table = sinusoidal_table(512, 64)
    assert table.shape == (512, 64)
    assert table.abs().max() <= 1.0
    assert torch.cdist(table, table).add(torch.eye(512) * 10).min() > 1e-2  # no two positions alike


@pytest.mark.parametrize("k", [1, 3, 17])
def test_sinusoidal_offset_is_a_fixed_linear_map(k: int) -> None:
    table = sinusoidal_table(4096 + k, 32).double()
    fit_at, check_at = torch.randperm(4096).split([2048, 2048])
    # Fit PE[p + k] = M_k PE[p] by least squares on half the positions, check it on the other half.
    fit = torch.linalg.lstsq(table[fit_at], table[fit_at + k]).solution  # (32, 32): rows @ M_k^T
    torch.testing.assert_close(table[check_at] @ fit, table[check_at + k], atol=1e-4, rtol=0)


def test_sinusoidal_module_has_no_parameters() -> None:
    positions = SinusoidalPositions(max_len=16, d_model=8)
    assert list(positions.parameters()) == [] and positions.state_dict() == {}
    torch.testing.assert_close(positions.embed(torch.tensor([[3, 0]])), sinusoidal_table(16, 8)[torch.tensor([[3, 0]])])


def test_learned_positions() -> None:
    positions = LearnedPositions(max_len=10, d_model=4)
    out = positions.embed(torch.arange(10)[None])
    assert out.shape == (1, 10, 4)
    torch.testing.assert_close(out[0], positions.embedding.weight)
    with pytest.raises(ShapeError, match=r"positions must lie in \[0, 10\) \(max_len\), got range \[0, 10\]"):
        positions.embed(torch.arange(11))


def test_registry_and_hooks() -> None:
    assert POSITIONS.names() == ["alibi", "learned", "none", "rope", "sinusoidal"]
    q, where = torch.randn(1, 2, 3, 4), torch.arange(3)
    for name in POSITIONS:
        scheme = build_positions(name, max_len=8, d_model=8, n_heads=2)
        adds, rotates = scheme.embed(where) is not None, not torch.equal(scheme.rotate(q, where), q)
        biases = scheme.score_bias(3, 5) is not None
        assert (adds, rotates, biases) == {"learned": (True, False, False), "sinusoidal": (True, False, False),
                                           "rope": (False, True, False), "alibi": (False, False, True),
                                           "none": (False, False, False)}[name]
    torch.testing.assert_close(build_positions("rope", max_len=8, d_model=8, n_heads=2, base=50.0).rotate(q, where),
                               RotaryEmbedding(4, base=50.0)(q, where))
    torch.testing.assert_close(build_positions("alibi", max_len=8, d_model=8, n_heads=2).score_bias(3, 5),
                               alibi_bias(2, 3, 5))
    with pytest.raises(ConfigError, match=r"position scheme 'rope' has no option 'theta'; known options: base"):
        build_positions("rope", max_len=8, d_model=8, n_heads=2, theta=5.0)


# --- RoPE ------------------------------------------------------------------------------------------


def test_rope_hand_worked() -> None:
    # head_dim 2: one pair (channels 0 and 1) with theta_0 = 1; position 1 rotates by 1 radian.
    rope = RotaryEmbedding(2)
    x = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    out = rope(x, torch.tensor([1]))
    torch.testing.assert_close(out.flatten(), torch.tensor([math.cos(1.0), math.sin(1.0)]))


def rope_by_complex_numbers(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Independent reference: pair i is the complex number x[i] + i x[i + Dh/2], multiplied by e^{i m theta_i}."""
    half = x.shape[-1] // 2
    theta = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / x.shape[-1])  # (Dh/2,)
    rotation = torch.polar(torch.ones(len(positions), half, dtype=torch.float64), positions.double()[:, None] * theta)
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * rotation  # (..., T, Dh/2)
    return torch.cat([z.real, z.imag], dim=-1).float()  # back to the rotate-half layout


def test_rope_equals_complex_multiplication() -> None:
    rope = RotaryEmbedding(16)
    x = torch.randn(2, 3, 7, 16)
    positions = torch.tensor([0, 1, 2, 5, 100, 1000, 4095])
    torch.testing.assert_close(rope(x, positions), rope_by_complex_numbers(x, positions), atol=2e-4, rtol=1e-4)


def test_rope_preserves_norms() -> None:
    x = torch.randn(2, 4, 9, 32)
    out = RotaryEmbedding(32)(x, torch.arange(9) * 37)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_relative_position() -> None:
    rope = RotaryEmbedding(32)
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        m, n, shift = torch.randint(0, 200, (3,), generator=generator).tolist()
        score = (rope(q, torch.tensor([m])) * rope(k, torch.tensor([n]))).sum()
        shifted = (rope(q, torch.tensor([m + shift])) * rope(k, torch.tensor([n + shift]))).sum()
        torch.testing.assert_close(score, shifted, atol=1e-4, rtol=1e-4)


def test_rope_bad_input() -> None:
    with pytest.raises(ConfigError, match="head_dim must be a positive even number, got 5"):
        RotaryEmbedding(5)
    with pytest.raises(ShapeError, match="expected head dim 8"):
        RotaryEmbedding(8)(torch.randn(1, 1, 3, 4), torch.arange(3))
    with pytest.raises(ShapeError, match=r"positions must be \(T,\) or \(B, T\) with B=1, T=3"):
        RotaryEmbedding(8)(torch.randn(1, 1, 3, 8), torch.arange(4))
    with pytest.raises(ShapeError, match=r"got \(2, 3\)"):
        RotaryEmbedding(8)(torch.randn(1, 1, 3, 8), torch.zeros(2, 3, dtype=torch.long))


def test_rope_positions_per_row_equal_each_row_alone() -> None:
    rope = RotaryEmbedding(16)
    x = torch.randn(3, 2, 5, 16)
    positions = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 2], [7, 9, 11, 13, 15]])
    rows = torch.cat([rope(x[i : i + 1], positions[i]) for i in range(3)])
    torch.testing.assert_close(rope(x, positions), rows, atol=0, rtol=0)


def test_sinusoidal_bad_dim() -> None:
    with pytest.raises(ConfigError, match="dim must be a positive even number, got 7"):
        sinusoidal_table(4, 7)


# --- ALiBi -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_heads", [1, 2, 4, 8, 16])
def test_alibi_slopes_are_geometric_for_powers_of_two(n_heads: int) -> None:
    expected = torch.tensor([2.0 ** (-8.0 / n_heads * i) for i in range(1, n_heads + 1)])
    torch.testing.assert_close(alibi_slopes(n_heads), expected)


def test_alibi_slopes_other_head_counts() -> None:
    # 6 heads: the 4 slopes of 4 heads, then every other slope of 8 heads (2^-1, 2^-3).
    expected = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected))


def test_alibi_bias_is_minus_slope_times_distance() -> None:
    bias = alibi_bias(4, 3, 5)  # 3 queries at absolute positions 2, 3, 4 over 5 keys
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(3):
            for j in range(5):
                assert bias[h, i, j].item() == pytest.approx(-slopes[h].item() * abs(2 + i - j))
