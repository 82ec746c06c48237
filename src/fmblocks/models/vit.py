"""Vision Transformer (Dosovitskiy et al., 2020): an image is a sequence of patch tokens.

    patches = split (B, C, H, W) into N = (H/P)(W/P) patches of C*P*P values      (B, N, C*P*P)
    x = [cls; patches W_patch + b] + pos                                          (B, N + 1, D)
    logits = head(BlockStack(x)[:, 0])                                            (B, n_classes)

The patch embedding is a linear projection of the flattened patches; with W_patch reshaped to
(D, C, P, P) it is exactly a Conv2d of kernel P and stride P. The class token's final state is the
image representation. Patches are read row by row, each flattened channel-major (C, P, P).
Limits: square images of exactly config.image_size with config.channels channels, float pixels.
"""

import torch
from torch import nn

from fmblocks.blocks.positional import ADDITIVE_POSITIONS
from fmblocks.errors import ShapeError
from fmblocks.models.config import ModelConfig
from fmblocks.models.output import ModelOutput
from fmblocks.models.stack import BlockStack, embedding_norm, init_weights, lm_loss


def image_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*P*P), patches in row-major order, each flattened as (C, P, P)."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, H/P, P, W/P, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    return x.reshape(b, (h // p) * (w // p), c * p * p)  # (B, N, C*P*P)


class ViT(nn.Module):
    """forward(images (B, C, H, W) float, labels (B,) long) -> ModelOutput(logits (B, n_classes), loss)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = nn.Linear(config.channels * config.patch_size**2, config.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        self.positions = ADDITIVE_POSITIONS.get(config.pos)(config.n_patches + 1, config.d_model)
        self.norm = embedding_norm(config)
        self.dropout = nn.Dropout(config.dropout)
        self.stack = BlockStack(config, config.n_layers)
        self.head = nn.Linear(config.d_model, config.n_classes)
        self.apply(init_weights)

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, *, return_intermediates: bool = False
    ) -> ModelOutput:
        c, size = self.config.channels, self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (c, size, size):
            raise ShapeError(f"images must be (B, {c}, {size}, {size}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ShapeError(f"images must be floating point (e.g. pixels / 255), got {images.dtype}")
        tokens = self.patch_embed(image_patches(images, self.config.patch_size))  # (B, N, D)
        cls = self.cls_token.expand(len(images), -1, -1)  # (B, 1, D)
        positions = torch.arange(tokens.shape[1] + 1, device=images.device)  # (N + 1,)
        x = self.dropout(self.norm(torch.cat([cls, tokens], dim=1) + self.positions(positions)))
        record = {"embeddings": x} if return_intermediates else None
        x = self.stack(x, positions=positions, record=record)
        logits = self.head(x[:, 0])  # (B, n_classes) from the class token
        loss = lm_loss(logits, labels) if labels is not None else None
        return ModelOutput(logits, loss, record)
