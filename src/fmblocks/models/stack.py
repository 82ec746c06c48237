"""What every model shares: token embeddings, a stack of TransformerBlocks, the LM loss, weight init.

    x = Embeddings(config)(input_ids (B, T), positions (T,) or (B, T), token_type_ids) -> (B, T, D)
        x = tok[ids] * s + pos[positions] (if pos is "learned" | "sinusoidal") + type[token_type_ids]
        s = sqrt(D) with sinusoidal positions (Vaswani et al.: unit-amplitude positions must not drown
        the token embeddings), else 1
        then LayerNorm/RMSNorm for post-norm configs (BERT normalises its embeddings), then dropout.
    x = BlockStack(config, n_layers)(x, mask=..., causal=..., positions=..., caches=..., record=dict)
        n TransformerBlocks built from the config's block names; "rope" and "alibi" are handed to
        attention; pre-norm stacks end with a final norm (GPT-2's ln_f, Llama's norm).

With `record` (a dict), the stack appends per layer: "attention" (B, H, T, S), "mlp" (B, T, d_ff),
"hidden" (B, T, D) (the block's output), and "cross_attention" (B, H, T, S_ctx) when present.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.blocks.attention import KVCache
from fmblocks.blocks.block import TransformerBlock
from fmblocks.blocks.norms import build_norm
from fmblocks.blocks.positional import ADDITIVE_POSITIONS, RotaryEmbedding
from fmblocks.errors import DataError, ShapeError
from fmblocks.models.config import ModelConfig

IGNORE_INDEX = -100


def check_length(length: int, max_len: int, *, cached: int = 0) -> None:
    """DataError when a sequence (plus what a KV cache already holds) does not fit the context."""
    if cached + length > max_len:
        held = f" + {cached} cached" if cached else ""
        raise DataError(f"sequence length {length}{held} exceeds the model's max_len {max_len}")


def check_ids(input_ids: torch.Tensor, name: str = "input_ids") -> None:
    if input_ids.ndim != 2 or input_ids.dtype not in (torch.int32, torch.int64):
        raise ShapeError(f"{name} must be a (B, T) integer tensor, got {tuple(input_ids.shape)} {input_ids.dtype}")


def embedding_norm(config: ModelConfig) -> nn.Module:
    """Post-norm models normalise the embeddings; pre-norm models do not (they norm at the end)."""
    return nn.Identity() if config.norm_first else build_norm(config.norm, config.d_model, eps=config.eps)


class Embeddings(nn.Module):
    """Token (+ additive position, + token type) embeddings: ids (B, T) -> (B, T, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.scale = math.sqrt(config.d_model) if config.pos == "sinusoidal" else 1.0
        additive = config.pos in ADDITIVE_POSITIONS
        self.positions = ADDITIVE_POSITIONS.get(config.pos)(config.max_len, config.d_model) if additive else None
        self.token_types = nn.Embedding(config.type_vocab_size, config.d_model) if config.type_vocab_size else None
        self.norm = embedding_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.tokens(input_ids) * self.scale  # (B, T, D)
        if self.positions is not None:
            x = x + self.positions(positions)  # (T, D) broadcast over B, or (B, T, D) per row
        if self.token_types is not None:
            types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            x = x + self.token_types(types)
        return self.dropout(self.norm(x))


class BlockStack(nn.Module):
    """n_layers TransformerBlocks named by the config, then the final norm of pre-norm stacks."""

    def __init__(self, config: ModelConfig, n_layers: int, *, cross_attention: bool = False) -> None:
        super().__init__()
        rope = RotaryEmbedding(config.head_dim, base=config.rope_base) if config.pos == "rope" else None
        self.layers = nn.ModuleList(
            TransformerBlock(
                config.d_model, config.n_heads, config.d_ff, norm=config.norm, norm_first=config.norm_first,
                ffn=config.ffn, activation=config.activation, cross_attention=cross_attention,
                bias=config.bias, dropout=config.dropout, n_kv_heads=config.n_kv_heads, rope=rope,
                alibi=config.pos == "alibi", attention=config.attention, eps=config.eps,
            )
            for _ in range(n_layers)
        )
        self.final_norm = build_norm(config.norm, config.d_model, eps=config.eps) if config.norm_first else nn.Identity()
        self.cross_attention = cross_attention

    def new_caches(self) -> list[KVCache]:
        """Empty caches: one per layer for self-attention, then (cross-attending stacks) one per layer
        for the projected context, which is computed at the first step and reused after."""
        return [KVCache() for _ in range(self._n_caches())]

    def _n_caches(self) -> int:
        return len(self.layers) * (2 if self.cross_attention else 1)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        record: dict | None = None,
    ) -> torch.Tensor:
        n = len(self.layers)
        if caches is not None and len(caches) != self._n_caches():
            raise ShapeError(f"expected the {self._n_caches()} caches of new_caches(), got {len(caches)}")
        for i, layer in enumerate(self.layers):
            out = layer(
                x, mask=mask, causal=causal, context=context, context_mask=context_mask, positions=positions,
                cache=None if caches is None else caches[i],
                cross_cache=caches[n + i] if caches is not None and self.cross_attention else None,
                return_intermediates=record is not None,
            )
            if record is None:
                x = out
                continue
            x, parts = out
            record.setdefault("attention", []).append(parts["attention"])
            record.setdefault("mlp", []).append(parts["mlp"])
            record.setdefault("hidden", []).append(x)
            if parts.get("cross_attention") is not None:
                record.setdefault("cross_attention", []).append(parts["cross_attention"])
        return self.final_norm(x)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (..., V) logits against (...) targets, skipping IGNORE_INDEX."""
    if targets.shape != logits.shape[:-1]:
        raise ShapeError(f"targets must have shape {tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
    return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2/BERT initialisation: linear and embedding weights ~ N(0, std^2), biases 0 (apply per module)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
