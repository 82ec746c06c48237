"""Encoder-only model (BERT, ESM): bidirectional self-attention and a masked-LM head.

    h = BlockStack(Embeddings(ids, token_type_ids))   every real token attends to every real token;
                                                      attention_mask (B, T) 1 = real, 0 = padding
    logits = MaskedLMHead(h)                          BERT head: norm(act(W h + b)) E^T + b_vocab,
                                                      E = token embeddings when tie_embeddings
    loss = CE(logits, labels)                         labels (B, T): the original token at masked
                                                      positions, -100 elsewhere

`encode()` returns the last hidden state (B, T, D) without the head (sentence embeddings, probing).
With `config.token_dropout` = m (ESM-2), the embeddings of token m are zeroed and every row is rescaled
by (1 - 0.15 * 0.8) / (1 - r), r = the row's share of real tokens that are m (`mask_token_dropout`).
Limits: the masking of the input (which tokens become [MASK]) is the data pipeline's job.
"""

import torch
from torch import nn

from fmblocks.blocks.attention import padding_mask
from fmblocks.blocks.feedforward import ACTIVATIONS
from fmblocks.blocks.norms import build_norm
from fmblocks.errors import ShapeError
from fmblocks.models.config import ModelConfig
from fmblocks.models.output import ModelOutput
from fmblocks.models.stack import BlockStack, Embeddings, check_ids, check_length, init_weights, lm_loss


MASK_RATIO_TRAIN = 0.15 * 0.8  # ESM-2's training: 15% of tokens chosen, 80% of those replaced by the mask token


def mask_token_dropout(
    x: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, mask_id: int
) -> torch.Tensor:
    """ESM-2 token dropout on embeddings x (B, T, D): mask-token rows zeroed, each row rescaled by
    (1 - MASK_RATIO_TRAIN) / (1 - observed mask ratio), as dropout rescales at evaluation."""
    is_mask = input_ids == mask_id  # (B, T)
    lengths = attention_mask.sum(-1) if attention_mask is not None else input_ids.shape[1]
    observed = is_mask.sum(-1).float() / lengths  # (B,)
    x = x.masked_fill(is_mask[..., None], 0.0)
    return (x * (1 - MASK_RATIO_TRAIN) / (1 - observed)[:, None, None]).to(x.dtype)


class MaskedLMHead(nn.Module):
    """(B, T, D) -> (B, T, V): a dense transform, activation and norm, then the vocabulary projection."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.act = ACTIVATIONS.get(config.activation)()
        self.norm = build_norm(config.norm, config.d_model, eps=config.eps)
        self.out = nn.Linear(config.d_model, config.vocab_size, bias=config.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.act(self.dense(h))))


class Encoder(nn.Module):
    """BERT-style encoder: forward(input_ids, attention_mask, token_type_ids, labels) -> ModelOutput."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        positions = config.build_positions()
        self.embed = Embeddings(config, positions)
        self.stack = BlockStack(config, config.n_layers, positions)
        self.mlm_head = MaskedLMHead(config)
        self.apply(init_weights)
        if config.tie_embeddings:
            self.mlm_head.out.weight = self.embed.tokens.weight

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        record: dict | None = None,
    ) -> torch.Tensor:
        """The last hidden state (B, T, D); `record` (a dict) collects the intermediates."""
        check_ids(input_ids, self.config.vocab_size)
        length = input_ids.shape[1]
        check_length(length, self.config.max_len)
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ShapeError(f"attention_mask must match input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
        mask = padding_mask(attention_mask.bool()) if attention_mask is not None else None  # (B, 1, 1, T)
        positions = torch.arange(length, device=input_ids.device)  # (T,)
        x = self.embed(input_ids, positions, token_type_ids)
        if self.config.token_dropout is not None:
            x = mask_token_dropout(x, input_ids, attention_mask, self.config.token_dropout)
        if record is not None:
            record["embeddings"] = x
        return self.stack(x, mask=mask, positions=positions, record=record)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        return_intermediates: bool = False,
    ) -> ModelOutput:
        record = {} if return_intermediates else None
        hidden = self.encode(input_ids, attention_mask, token_type_ids, record=record)
        logits = self.mlm_head(hidden)
        loss = lm_loss(logits, labels) if labels is not None else None
        return ModelOutput(logits, loss, record)
