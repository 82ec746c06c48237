"""Block 7 · the residual transformer block: attention and feed-forward sublayers around a residual stream.

x (B, T, D) -> x (B, T, D). Parts are injected: the token mixer `mixer` (a module, or a name in MIXERS
built with `mixer_options`; default "attention" with core `attention`), norm ("layer" | "rms"), ffn
("mlp" | "swiglu" | "geglu"), activation (for "mlp"), and `positional`, the position scheme whose hooks
the mixer applies. The mixer sublayer is `attn` whatever the mixer is (checkpoint names stay stable).
With cross_attention=True a middle sublayer attends to a context (B, S, Dc) (the decoder of an
encoder-decoder model).

    pre-norm  (GPT-2, Llama):  x = x + drop(attn(norm1(x)))
                               x = x + drop(cross_attn(norm_cross(x), context))      [cross_attention]
                               x = x + drop(ffn(norm2(x)))
    post-norm (original, BERT): x = norm1(x + drop(attn(x)))
                               x = norm_cross(x + drop(cross_attn(x, context)))       [cross_attention]
                               x = norm2(x + drop(ffn(x)))

With dropout 0 these equal torch.nn.TransformerEncoderLayer / TransformerDecoderLayer (batch_first,
norm_first=pre-norm) given the same weights. `return_intermediates=True` also returns a dict with the
mixer's weights (B, H, T, S) (as computed by the mixer that made the output), the cross-attention weights
(B, H, T, S_ctx) or None, and the feed-forward hidden activations (B, T, d_ff).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fmblocks.blocks.attention import KVCache, MultiHeadAttention
from fmblocks.blocks.feedforward import build_feedforward
from fmblocks.blocks.mixers import MixerSpec, build_mixer
from fmblocks.blocks.norms import build_norm
from fmblocks.blocks.positional import PositionScheme
from fmblocks.errors import ConfigError


class TransformerBlock(nn.Module):
    """Self-attention [+ cross-attention] + feed-forward with residuals, pre- or post-norm; (B, T, D) -> (B, T, D)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        norm: str = "layer",
        norm_first: bool = True,
        ffn: str = "mlp",
        activation: str = "gelu",
        cross_attention: bool = False,
        d_context: int | None = None,
        bias: bool = True,
        qkv_bias: bool | None = None,
        dropout: float = 0.0,
        n_kv_heads: int | None = None,
        positional: PositionScheme | None = None,
        attention: str = "sdpa",
        mixer: str | nn.Module = "attention",
        mixer_options: dict[str, Any] | None = None,
        cross_options: dict[str, Any] | None = None,
        max_len: int = 0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if d_context is not None and not cross_attention:
            raise ConfigError("d_context is only used with cross_attention=True")
        self.norm_first = norm_first
        spec = MixerSpec(d_model, n_heads, n_kv_heads=n_kv_heads, max_len=max_len, bias=bias, qkv_bias=qkv_bias,
                         dropout=dropout, core=attention)
        if isinstance(mixer, nn.Module):
            if mixer_options:
                raise ConfigError("mixer_options apply to a mixer given by name, not to a built module")
            self.attn = mixer
        else:
            self.attn = build_mixer(mixer, spec, positional=positional, **(mixer_options or {}))
        self.norm1 = build_norm(norm, d_model, eps=eps)
        self.cross_attn = self.norm_cross = None
        if cross_attention:  # full heads; `cross_options` are the options of its core `attention`
            self.cross_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout, core=attention,
                                                 d_context=d_context, **(cross_options or {}))
            self.norm_cross = build_norm(norm, d_model, eps=eps)
        self.ffn = build_feedforward(ffn, d_model, d_ff, activation=activation, bias=bias, dropout=dropout)
        self.norm2 = build_norm(norm, d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, sublayer: Callable) -> tuple[torch.Tensor, object]:
        """Residual step around `sublayer` (returning (out, extra)), pre- or post-norm; returns (x, extra)."""
        out, extra = sublayer(norm(x) if self.norm_first else x)
        x = x + self.dropout(out)
        return (x if self.norm_first else norm(x)), extra

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        cache: Any = None,
        cross_cache: KVCache | None = None,
        return_intermediates: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict]:
        if (context is None) != (self.cross_attn is None):
            raise ConfigError(
                "a block built with cross_attention=True needs context=, and one without refuses it; "
                f"got cross_attention={self.cross_attn is not None}, context given={context is not None}"
            )
        keep = return_intermediates

        def pair(out: torch.Tensor | tuple) -> tuple:
            return out if keep else (out, None)

        x, attention = self._sublayer(
            x,
            self.norm1,
            lambda h: pair(
                self.attn(h, mask=mask, causal=causal, positions=positions, cache=cache, return_weights=keep)
            ),
        )
        cross = None
        if self.cross_attn is not None:
            x, cross = self._sublayer(
                x, self.norm_cross, lambda h: pair(self.cross_attn(h, context, context_mask, cache=cross_cache,
                                                                return_weights=keep))
            )
        x, hidden = self._sublayer(x, self.norm2, lambda h: pair(self.ffn(h, return_hidden=keep)))
        if return_intermediates:
            return x, {"attention": attention, "cross_attention": cross, "mlp": hidden}
        return x
