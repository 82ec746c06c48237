"""Decoder-only language model (GPT-2, Llama): causal self-attention and a next-token head.

    h = BlockStack(Embeddings(ids))          causal mask: position t attends to positions <= t
    logits = h W_out^T                       W_out = token embedding matrix when tie_embeddings
    loss = CE(logits[b, t], targets[b, t])   targets are aligned with input_ids (targets[:, t] is the
                                             token that follows input_ids[:, t]); -100 is ignored

Generation: `caches = model.new_caches()` (one LayerCache per layer), then call
`model(ids, caches=caches)` with the prompt and afterwards one new token at a time; positions
continue from what the caches hold. `only_last=True` computes the logits of the last position only.
A conditioning prefix (e.g. a class token) is simply part of input_ids.

Padding: prompts of different lengths share a batch by left padding. `attention_mask` (B, S), 1 =
token and 0 = padding, covers every position so far (the cached ones and input_ids, S = cached + T).
No token attends to padding, and positions count tokens only (position = number of earlier tokens),
so each row's logits equal those of its prompt alone. ALiBi measures distances in slots, which equals
that only when all padding is on the left. Padding slots themselves get meaningless logits.
Limits: total length <= max_len.
"""

import torch
from torch import nn

from fmblocks.blocks.attention import padding_mask
from fmblocks.blocks.cache import LayerCache
from fmblocks.errors import ConfigError, ShapeError
from fmblocks.models.config import ModelConfig
from fmblocks.models.output import ModelOutput
from fmblocks.models.stack import BlockStack, Embeddings, check_ids, check_length, init_weights, lm_loss


class Decoder(nn.Module):
    """GPT-style decoder: forward(input_ids (B, T), targets (B, T)) -> ModelOutput(logits (B, T, V), loss)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        positions = config.build_positions()
        self.embed = Embeddings(config, positions)
        self.stack = BlockStack(config, config.n_layers, positions)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(init_weights)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.tokens.weight

    def new_caches(self) -> list[LayerCache]:
        """Empty caches, one per layer, for incremental decoding."""
        return self.stack.new_caches()

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        caches: list[LayerCache] | None = None,
        only_last: bool = False,
        return_intermediates: bool = False,
    ) -> ModelOutput:
        check_ids(input_ids, self.config.vocab_size)
        if only_last and targets is not None:
            raise ConfigError("only_last=True computes one position's logits and cannot be combined with targets")
        offset = caches[0].length if caches else 0
        length = input_ids.shape[1]
        check_length(length, self.config.max_len, cached=offset)
        if attention_mask is None:
            positions, mask = torch.arange(offset, offset + length, device=input_ids.device), None  # (T,)
        else:
            if attention_mask.shape != (input_ids.shape[0], offset + length):
                raise ShapeError(f"attention_mask must be (B, cached + T) = {(input_ids.shape[0], offset + length)}, "
                                 f"got {tuple(attention_mask.shape)}")
            keep = attention_mask.bool()
            positions = (keep.cumsum(dim=1) - 1).clamp(min=0)[:, offset:]  # (B, T): tokens before each position
            mask = padding_mask(keep)  # (B, 1, 1, S)
        x = self.embed(input_ids, positions)
        record = {"embeddings": x} if return_intermediates else None
        # One new token after the cache sees every key anyway: skip building a causal mask.
        causal = length > 1
        x = self.stack(x, mask=mask, causal=causal, positions=positions, caches=caches, record=record)
        if only_last:
            x = x[:, -1:]  # (B, 1, D)
        logits = self.lm_head(x)
        loss = lm_loss(logits, targets) if targets is not None else None
        return ModelOutput(logits, loss, record)
