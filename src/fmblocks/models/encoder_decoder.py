"""Encoder-decoder model (the original Transformer, T5-like): the decoder cross-attends to the encoder.

    memory = EncoderStack(Embeddings(input_ids))                 bidirectional, source padding masked
    h = DecoderStack(Embeddings(decoder_input_ids), memory)     causal self-attention, then
                                                                cross-attention: Q from the decoder,
                                                                K, V from memory (B, S, D)
    logits = h W_out^T;  loss = CE(logits, targets)             targets aligned with decoder_input_ids

Source and target share one vocabulary and one embedding table (and the output projection when
tie_embeddings). The decoder has `n_decoder_layers` blocks (0 = as many as the encoder).
Intermediates: the decoder's "embeddings", "attention", "mlp", "hidden", its "cross_attention"
(B, H, T_dec, S) per layer, and the encoder's dict under "encoder".
Generation: `memory = model.encode(...)` once, then `model.decode(ids, memory, caches=caches)` with the
start of the target and afterwards one new token at a time. `caches = model.new_caches()` hold the
decoder's self-attention keys and values, and the memory as each layer's cross-attention projected it
at the first step. `fmblocks.generation.generate_seq2seq` does this with the sampling filters.
"""

import torch
from torch import nn

from fmblocks.blocks.attention import padding_mask
from fmblocks.blocks.cache import LayerCache
from fmblocks.errors import ShapeError
from fmblocks.models.config import ModelConfig
from fmblocks.models.output import ModelOutput
from fmblocks.models.stack import BlockStack, Embeddings, check_ids, check_length, init_weights, lm_loss


class EncoderDecoder(nn.Module):
    """forward(input_ids (B, S), decoder_input_ids (B, T), attention_mask (B, S), targets (B, T))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        positions = config.build_positions()
        self.embed = Embeddings(config, positions)
        self.encoder = BlockStack(config, config.n_layers, positions)
        self.decoder = BlockStack(config, config.decoder_layers, positions, cross_attention=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(init_weights)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.tokens.weight

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, record: dict | None = None
    ) -> torch.Tensor:
        """The encoder's output (B, S, D), the memory the decoder attends to; attention_mask (B, S) 1 = token,
        0 = padding, as Encoder.encode takes it."""
        check_ids(input_ids, self.config.vocab_size)
        check_length(input_ids.shape[1], self.config.max_len)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (S,)
        x = self.embed(input_ids, positions)
        if record is not None:
            record["embeddings"] = x
        mask = self.source_mask(input_ids, attention_mask)  # (B, 1, 1, S) or None
        return self.encoder(x, mask=mask, positions=positions, record=record)

    def new_caches(self) -> list[LayerCache]:
        """Empty caches, one per decoder layer, for incremental decoding."""
        return self.decoder.new_caches()

    def source_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """attention_mask (B, S) of 1 = token, 0 = padding -> the boolean key mask (B, 1, 1, S), or None."""
        if attention_mask is None:
            return None
        if attention_mask.shape != input_ids.shape:
            raise ShapeError(
                f"attention_mask must match input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
        return padding_mask(attention_mask.bool())

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        memory: torch.Tensor,
        source_mask: torch.Tensor | None = None,
        *,
        caches: list[LayerCache] | None = None,
        only_last: bool = False,
        record: dict | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) (or (B, 1, V) with only_last) of the decoder reading `memory` (B, S, D)."""
        check_ids(decoder_input_ids, self.config.vocab_size, "decoder_input_ids")
        offset = caches[0].length if caches else 0
        length = decoder_input_ids.shape[1]
        check_length(length, self.config.max_len, cached=offset)
        positions = torch.arange(offset, offset + length, device=decoder_input_ids.device)  # (T,)
        x = self.embed(decoder_input_ids, positions)
        if record is not None:
            record["embeddings"] = x
        x = self.decoder(x, causal=length > 1, context=memory, context_mask=source_mask, positions=positions,
                         caches=caches, record=record)
        return self.lm_head(x[:, -1:] if only_last else x)

    def forward(
        self,
        input_ids: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        *,
        return_intermediates: bool = False,
    ) -> ModelOutput:
        source_mask = self.source_mask(input_ids, attention_mask)  # (B, 1, 1, S) or None
        encoder_record = {} if return_intermediates else None
        memory = self.encode(input_ids, attention_mask, record=encoder_record)
        record = {"encoder": encoder_record} if return_intermediates else None
        logits = self.decode(decoder_input_ids, memory, source_mask, record=record)
        loss = lm_loss(logits, targets) if targets is not None else None
        return ModelOutput(logits, loss, record)
