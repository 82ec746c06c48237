"""Block 2 · positional information: one registry of schemes, each an object with the hooks it needs.

Attention is permutation-equivariant, so order must be injected. A scheme (a `PositionScheme`) may do it
in any of three places, and overrides only the hooks it uses:

    embed(positions) -> (..., D) or None       added to the token embeddings (x = tok * scale + embed)
    rotate(x, positions) -> x                  applied to queries and keys (B, H, T, Dh) inside attention
    score_bias(t, s) -> (H, t, s) or None      added to attention scores (queries = last t of s positions)

Registered in `POSITIONS` (a config's `pos=`), built by `build_positions(name, max_len=, d_model=,
n_heads=, **options)`:
    sinusoidal (Vaswani et al., 2017):  PE[p, 2i] = sin(p / base^(2i/D)),  PE[p, 2i+1] = cos(p / base^(2i/D)).
        PE[p + k] = M_k PE[p] for a fixed rotation M_k (block diagonal 2x2), so relative offsets are linear.
        Token embeddings are scaled by sqrt(D) so that unit-amplitude positions do not drown them.
    learned (GPT-2, BERT): one trained vector per position; positions >= max_len are refused.
    rope (Su et al., 2021): rotate q and k by position-dependent angles so that <R_m q, R_n k> depends on
        n - m only. Rotate-half convention (as HF Llama): channel i pairs with channel i + Dh/2, pair i is
        rotated by the angle m * theta_i, theta_i = base^(-2i/Dh), i = 0 .. Dh/2 - 1:
            R_m x = x * cos(m theta) + rotate_half(x) * sin(m theta),  rotate_half([a, b]) = [-b, a].
        Option `scaling` stretches theta past the trained context (linear, dynamic NTK, YaRN, llama3;
        rope_scaling.py).
    alibi (Press et al., 2021): no embedding; an additive score bias -slope_h * |i - j| per head h, with
        slopes 2^(-8h/H), h = 1..H for H a power of two (interleaved extension otherwise).
    none: no positional information (a causal mask alone still reveals order).

A scheme's options are its constructor's keyword-only arguments (rope: base, scaling); `option_names()` lists them.
Hooks used inside attention (rotate, score_bias) compute on the device of their input, so one scheme
object can be shared by the embeddings and every layer.
"""

import math

import torch
from torch import nn

from fmblocks.blocks.rope_scaling import check_scaling, rope_frequencies
from fmblocks.errors import ConfigError, ShapeError
from fmblocks.registry import Registry, check_options, keyword_options


class PositionScheme(nn.Module):
    """A positional scheme; the base class injects nothing (every hook is the identity / absent)."""

    embedding_scale: float = 1.0

    def __init__(self, *, max_len: int, d_model: int, n_heads: int) -> None:
        super().__init__()
        if min(max_len, d_model, n_heads) < 1:
            raise ConfigError(f"positions need max_len, d_model, n_heads >= 1, got {max_len}, {d_model}, {n_heads}")
        self.max_len, self.d_model, self.n_heads = max_len, d_model, n_heads

    @classmethod
    def option_names(cls) -> list[str]:
        """The scheme's options: keyword-only constructor arguments beyond max_len, d_model, n_heads."""
        return keyword_options(cls, exclude=("max_len", "d_model", "n_heads"))

    @classmethod
    def parameter_count(cls, n_positions: int, d_model: int) -> tuple[int, str]:
        """Trainable parameters of the scheme for n_positions (symbol P) and width d: (count, formula)."""
        return 0, "0"

    def embed(self, positions: torch.Tensor) -> torch.Tensor | None:
        """Vectors (..., D) added to the token embeddings at `positions` (...), or None."""
        return None

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Queries or keys x (B, H, T, Dh) at positions (T,) or (B, T), transformed (identity here)."""
        return x

    def score_bias(self, t: int, s: int, *, device: torch.device | str | None = None) -> torch.Tensor | None:
        """An additive score bias (H, t, s) for t queries (the last t of s positions), or None."""
        return None


POSITIONS: Registry[type[PositionScheme]] = Registry("position scheme")
POSITIONS.register("none")(PositionScheme)


def build_positions(name: str, *, max_len: int, d_model: int, n_heads: int, **options: object) -> PositionScheme:
    """The scheme registered as `name`; unknown options -> ConfigError naming the scheme's known options."""
    scheme = POSITIONS.get(name)
    check_options(f"position scheme {name!r}", options, scheme.option_names())
    return scheme(max_len=max_len, d_model=d_model, n_heads=n_heads, **options)


def _check_positions(positions: torch.Tensor, max_len: int) -> None:
    if positions.dtype not in (torch.int32, torch.int64):
        raise ShapeError(f"positions must be an integer tensor, got dtype {positions.dtype}")
    if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= max_len):
        raise ShapeError(
            f"positions must lie in [0, {max_len}) (max_len), got range "
            f"[{int(positions.min())}, {int(positions.max())}]"
        )


# --- added to the embeddings ---------------------------------------------------------------------------


def sinusoidal_table(n_positions: int, dim: int, *, base: float = 10000.0) -> torch.Tensor:
    """(n_positions, dim) table: PE[p, 2i] = sin(p / base^(2i/dim)), PE[p, 2i+1] = cos(p / base^(2i/dim))."""
    if dim < 2 or dim % 2:
        raise ConfigError(f"sinusoidal dim must be a positive even number, got {dim}")
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angle = position * inv_freq  # (P, dim/2)
    table = torch.stack([angle.sin(), angle.cos()], dim=-1)  # (P, dim/2, 2)
    return table.reshape(n_positions, dim).float()  # (P, dim), sin/cos interleaved


@POSITIONS.register("sinusoidal")
class SinusoidalPositions(PositionScheme):
    """Fixed sinusoidal embeddings: positions (...) long -> (..., D). No parameters (a non-saved buffer)."""

    def __init__(self, *, max_len: int, d_model: int, n_heads: int = 1, base: float = 10000.0) -> None:
        super().__init__(max_len=max_len, d_model=d_model, n_heads=n_heads)
        if not base > 0:
            raise ConfigError(f"sinusoidal base must be > 0, got {base}")
        self.embedding_scale = math.sqrt(d_model)
        self.register_buffer("table", sinusoidal_table(max_len, d_model, base=base), persistent=False)

    def embed(self, positions: torch.Tensor) -> torch.Tensor:
        _check_positions(positions, self.max_len)
        return self.table[positions]


@POSITIONS.register("learned")
class LearnedPositions(PositionScheme):
    """One trained vector per position: positions (...) long -> (..., D); ShapeError past max_len."""

    def __init__(self, *, max_len: int, d_model: int, n_heads: int = 1) -> None:
        super().__init__(max_len=max_len, d_model=d_model, n_heads=n_heads)
        self.embedding = nn.Embedding(max_len, d_model)

    @classmethod
    def parameter_count(cls, n_positions: int, d_model: int) -> tuple[int, str]:
        return n_positions * d_model, "P·d"

    def embed(self, positions: torch.Tensor) -> torch.Tensor:
        _check_positions(positions, self.max_len)
        return self.embedding(positions)


# --- rotary: inside attention ----------------------------------------------------------------------------


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[a, b] -> [-b, a] on the last dim split in halves; (..., Dh) -> (..., Dh)."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class RotaryEmbedding(nn.Module):
    """RoPE: x (B, H, T, Dh), positions (T,) or per row (B, T) long -> x rotated pairwise by positions * theta.

    theta_i = base^(-2i/Dh) for i < Dh/2; channel i and i + Dh/2 form pair i (rotate-half layout).
    Norms are preserved and <R_m q, R_n k> depends only on n - m. The angles are computed in float32
    from the positions each call, on the input's device, so any position is allowed.
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0, scaling: dict | None = None) -> None:
        super().__init__()
        if head_dim < 2 or head_dim % 2:
            raise ConfigError(f"RoPE head_dim must be a positive even number, got {head_dim}")
        if not base > 0:
            raise ConfigError(f"RoPE base must be > 0, got {base}")
        self.head_dim, self.base = head_dim, base
        self.scaling = None if scaling is None else check_scaling(scaling)

    def inv_freq(self, device: torch.device | str | None = None) -> torch.Tensor:
        """theta_i = base^(-2i/Dh), i < Dh/2: (Dh/2,) float32."""
        return self.base ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=device) / self.head_dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.head_dim:
            raise ShapeError(f"RoPE expected head dim {self.head_dim}, got input {tuple(x.shape)}")
        rows, t = x.shape[0], x.shape[-2]
        if positions.shape not in ((t,), (rows, t)):
            raise ShapeError(
                f"RoPE positions must be (T,) or (B, T) with B={rows}, T={t}; got {tuple(positions.shape)}")
        if self.scaling is None:
            theta, factor = self.inv_freq(x.device), 1.0
        else:  # only "dynamic" reads seq_len (the largest position + 1)
            seq_len = int(positions.max()) + 1 if self.scaling["type"] == "dynamic" and positions.numel() else 0
            theta, factor = rope_frequencies(self.head_dim, self.base, self.scaling, seq_len=seq_len, device=x.device)
        angle = positions.float()[..., None] * theta  # (T, Dh/2) or (B, T, Dh/2)
        angle = torch.cat([angle, angle], dim=-1)  # pair i uses the same angle at channels i and i + Dh/2
        if angle.dim() == 3:
            angle = angle[:, None]  # (B, 1, T, Dh): the same angles for every head
        cos, sin = angle.cos(), angle.sin()
        if factor != 1.0:  # YaRN's attention factor scales q and k (scores by factor^2)
            cos, sin = cos * factor, sin * factor
        return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)

    def extra_repr(self) -> str:
        scaling = "" if self.scaling is None else f", scaling={self.scaling}"
        return f"head_dim={self.head_dim}, base={self.base}{scaling}"


@POSITIONS.register("rope")
class RotaryPositions(PositionScheme):
    """The rope scheme: queries and keys rotated by RotaryEmbedding(d_model / n_heads, base, scaling);
    `scaling` (None or a dict {"type": "linear" | "dynamic" | "yarn" | "llama3", ...}, see rope_scaling.py)
    stretches the frequencies past the trained context."""

    def __init__(
        self, *, max_len: int, d_model: int, n_heads: int, base: float = 10000.0, scaling: dict | None = None
    ) -> None:
        super().__init__(max_len=max_len, d_model=d_model, n_heads=n_heads)
        if d_model % n_heads:
            raise ConfigError(f"rope needs d_model ({d_model}) divisible by n_heads ({n_heads})")
        self.rotary = RotaryEmbedding(d_model // n_heads, base=base, scaling=scaling)

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.rotary(x, positions)


# --- ALiBi: a bias on the scores -------------------------------------------------------------------------


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """(H,) ALiBi slopes: 2^(-8h/H), h = 1..H for H a power of two.

    Otherwise the slopes of the closest lower power of two n, followed by every other slope of 2n
    (the paper's extension), so heads still span a geometric range.
    """
    if n_heads < 1:
        raise ConfigError(f"ALiBi needs n_heads >= 1, got {n_heads}")

    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    n = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(n) + geometric(2 * n)[0::2][: n_heads - n]
    return torch.tensor(slopes)


def alibi_bias(n_heads: int, t: int, s: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(H, t, s) additive bias -slope_h * |i - j|, the t queries being the last t of s positions."""
    query = torch.arange(s - t, s, device=device)[:, None]  # (t, 1) absolute query positions
    key = torch.arange(s, device=device)[None, :]  # (1, s)
    distance = (query - key).abs().float()  # (t, s)
    return -alibi_slopes(n_heads).to(device)[:, None, None] * distance  # (H, t, s)


@POSITIONS.register("alibi")
class AlibiPositions(PositionScheme):
    """The alibi scheme: the score bias alibi_bias(n_heads, t, s); distances count slots, padding included."""

    def score_bias(self, t: int, s: int, *, device: torch.device | str | None = None) -> torch.Tensor:
        return alibi_bias(self.n_heads, t, s, device=device)
