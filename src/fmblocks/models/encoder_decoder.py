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
Limits: no KV cache for the decoder (generate() supports decoder-only models).
"""

import torch
from torch import nn

from fmblocks.blocks.attention import padding_mask
from fmblocks.errors import ShapeError
from fmblocks.models.config import ModelConfig
from fmblocks.models.output import ModelOutput
from fmblocks.models.stack import BlockStack, Embeddings, check_ids, check_length, init_weights, lm_loss


class EncoderDecoder(nn.Module):
    """forward(input_ids (B, S), decoder_input_ids (B, T), attention_mask (B, S), targets (B, T))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.encoder = BlockStack(config, config.n_layers)
        self.decoder = BlockStack(config, config.decoder_layers, cross_attention=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(init_weights)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.tokens.weight

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, record: dict | None = None
    ) -> torch.Tensor:
        """The encoder's output (B, S, D), the memory the decoder attends to."""
        check_ids(input_ids)
        check_length(input_ids.shape[1], self.config.max_len)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (S,)
        x = self.embed(input_ids, positions)
        if record is not None:
            record["embeddings"] = x
        return self.encoder(x, mask=attention_mask, positions=positions, record=record)

    def forward(
        self,
        input_ids: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        *,
        return_intermediates: bool = False,
    ) -> ModelOutput:
        check_ids(decoder_input_ids, "decoder_input_ids")
        check_length(decoder_input_ids.shape[1], self.config.max_len)
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ShapeError(f"attention_mask must match input_ids {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
        source_mask = padding_mask(attention_mask.bool()) if attention_mask is not None else None  # (B, 1, 1, S)
        encoder_record = {} if return_intermediates else None
        memory = self.encode(input_ids, source_mask, record=encoder_record)

        positions = torch.arange(decoder_input_ids.shape[1], device=decoder_input_ids.device)  # (T,)
        x = self.embed(decoder_input_ids, positions)
        record = {"embeddings": x, "encoder": encoder_record} if return_intermediates else None
        x = self.decoder(x, causal=True, context=memory, context_mask=source_mask, positions=positions, record=record)
        logits = self.lm_head(x)
        loss = lm_loss(logits, targets) if targets is not None else None
        return ModelOutput(logits, loss, record)
