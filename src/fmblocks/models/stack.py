"""What every model shares: token embeddings, a stack of TransformerBlocks, the LM loss, weight init.

    scheme = config.build_positions()     the model's one position scheme, shared by all of the below
    x = Embeddings(config, scheme)(input_ids (B, T), positions (T,) or (B, T), token_type_ids) -> (B, T, D)
        x = tok[ids] * s + scheme.embed(positions) (when the scheme adds vectors) + type[token_type_ids]
        s = scheme.embedding_scale (sqrt(D) for sinusoidal positions, else 1)
        then LayerNorm/RMSNorm for post-norm configs (BERT normalises its embeddings), then dropout.
    x = BlockStack(config, n_layers, scheme)(x, mask=..., causal=..., positions=..., caches=..., record=dict)
        n TransformerBlocks built from the config's block names, layer i with mixer
        config.layer_mixers(n)[i], each handed the scheme; pre-norm stacks end with a final norm
        (GPT-2's ln_f, Llama's norm).

With `record` (a dict), the stack appends per layer: "attention" (B, H, T, S) (the mixer's weights),
"mlp" (B, T, d_ff), "hidden" (B, T, D) (the block's output), and "cross_attention" (B, H, T, S_ctx)
when present. Caches: `new_caches()` gives one LayerCache per layer.
"""

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.blocks.block import TransformerBlock
from fmblocks.blocks.cache import KVCache, LayerCache
from fmblocks.blocks.norms import build_norm
from fmblocks.blocks.positional import PositionScheme
from fmblocks.errors import DataError, ShapeError
from fmblocks.models.config import ModelConfig

IGNORE_INDEX = -100  # targets/labels with this value are skipped by the loss (the one home of this fact)


def check_length(length: int, max_len: int, *, cached: int = 0) -> None:
    """DataError when a sequence (plus what a KV cache already holds) does not fit the context."""
    if cached + length > max_len:
        held = f" + {cached} cached" if cached else ""
        raise DataError(f"sequence length {length}{held} exceeds the model's max_len {max_len}")


def check_ids(input_ids: torch.Tensor, vocab_size: int, name: str = "input_ids") -> None:
    """ShapeError unless (B, T) integers; DataError naming the first id outside [0, vocab_size). The id check
    reads the tensor (a device sync), so it is skipped while torch.compile traces the model."""
    if input_ids.ndim != 2 or input_ids.dtype not in (torch.int32, torch.int64):
        raise ShapeError(f"{name} must be a (B, T) integer tensor, got {tuple(input_ids.shape)} {input_ids.dtype}")
    if torch.compiler.is_compiling():  # inside a compiled graph the check would break it; eager calls check
        return
    bad = (input_ids < 0) | (input_ids >= vocab_size)
    if input_ids.numel() and bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"{name}[{row}, {col}] = {int(input_ids[row, col])} is not a token id of this model "
                        f"(vocab_size {vocab_size})")


def embedding_norm(config: ModelConfig) -> nn.Module:
    """Post-norm models normalise the embeddings; pre-norm models do not (they norm at the end)."""
    return nn.Identity() if config.norm_first else build_norm(config.norm, config.d_model, eps=config.eps)


class Embeddings(nn.Module):
    """Token (+ position, + token type) embeddings: ids (B, T) -> (B, T, D). Owns the model's position scheme."""

    def __init__(self, config: ModelConfig, positions: PositionScheme) -> None:
        super().__init__()
        self.tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.positions = positions
        self.token_types = nn.Embedding(config.type_vocab_size, config.d_model) if config.type_vocab_size else None
        self.norm = embedding_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.tokens(input_ids) * self.positions.embedding_scale  # (B, T, D)
        added = self.positions.embed(positions)  # (T, D) broadcast over B, (B, T, D) per row, or None
        if added is not None:
            x = x + added
        if self.token_types is not None:
            types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            x = x + self.token_types(types)
        return self.dropout(self.norm(x))


class BlockStack(nn.Module):
    """n_layers TransformerBlocks named by the config, then the final norm of pre-norm stacks."""

    def __init__(
        self, config: ModelConfig, n_layers: int, positions: PositionScheme, *, cross_attention: bool = False
    ) -> None:
        super().__init__()
        cross_options = config.options_for("attention") if cross_attention else None
        self.layers = nn.ModuleList(
            TransformerBlock(
                config.d_model, config.n_heads, config.d_ff, norm=config.norm, norm_first=config.norm_first,
                ffn=config.ffn, activation=config.activation, cross_attention=cross_attention,
                bias=config.bias, qkv_bias=config.qkv_bias, dropout=config.dropout, n_kv_heads=config.n_kv_heads, positional=positions,
                attention=config.attention, mixer=mixer, mixer_options=config.options_for(mixer),
                cross_options=cross_options, max_len=config.max_len, eps=config.eps,
            )
            for mixer in config.layer_mixers(n_layers)
        )
        self.final_norm = build_norm(config.norm, config.d_model, eps=config.eps) if config.norm_first else nn.Identity()
        self.cross_attention = cross_attention

    def new_caches(self) -> list[LayerCache]:
        """Empty caches, one per layer: its mixer's state and (cross-attending stacks) a KVCache for the
        projected context, which is computed at the first step and reused after."""
        return [LayerCache(layer.attn.new_cache(), KVCache() if self.cross_attention else None)
                for layer in self.layers]

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        caches: list[LayerCache] | None = None,
        record: dict | None = None,
    ) -> torch.Tensor:
        if caches is not None and len(caches) != len(self.layers):
            raise ShapeError(f"expected the {len(self.layers)} caches of new_caches(), got {len(caches)}")
        for i, layer in enumerate(self.layers):
            cache = None if caches is None else caches[i]
            out = layer(
                x, mask=mask, causal=causal, context=context, context_mask=context_mask, positions=positions,
                cache=None if cache is None else cache.mixer, cross_cache=None if cache is None else cache.cross,
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
