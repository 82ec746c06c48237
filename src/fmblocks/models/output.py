"""ModelOutput: what every fmblocks model returns.

    out = model(**batch)
    out.logits          decoder/encoder (B, T, V); encoder-decoder (B, T_dec, V); vit (B, n_classes)
    out.loss            mean cross-entropy when targets/labels were given (ignore_index -100), else None
    out.intermediates   with return_intermediates=True: {"embeddings": (B, T, D),
                        "attention": [per layer (B, H, T, S)], "mlp": [per layer (B, T, d_ff)],
                        "hidden": [per layer (B, T, D)]} (plus "cross_attention" and "encoder"
                        for the encoder-decoder), else None
"""

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ModelOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    intermediates: dict[str, Any] | None = None
