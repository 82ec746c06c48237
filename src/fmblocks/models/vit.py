"""Vision Transformer (Dosovitskiy et al., 2020): an image is a sequence of patch tokens.

    patches = patchify(images, P)              N = (H/P)(W/P) patches of P*P*C values   (B, N, P*P*C)
    x = [cls; patches W_patch + b] + pos                                                (B, N + 1, D)
    logits = head(BlockStack(x)[:, 0])                                                  (B, n_classes)

The patch embedding is fmblocks.blocks.patch_embed.PatchEmbed (`patch_embed.proj` holds W_patch, b):
patches are read row by row, each flattened channel last as (P, P, C), and the projection is exactly
a Conv2d of kernel P and stride P (`PatchEmbed.from_conv` / `to_conv` convert the weights). The
class token's final state is the image representation.
Limits: square images of exactly config.image_size with config.channels channels, float pixels.
"""

import torch
from torch import nn

from fmblocks.errors import ShapeError
from fmblocks.models.config import ModelConfig
from fmblocks.models.output import ModelOutput
from fmblocks.models.stack import BlockStack, embedding_norm, init_weights, lm_loss
from fmblocks.blocks.patch_embed import PatchEmbed


class ViT(nn.Module):
    """forward(images (B, C, H, W) float, labels (B,) long) -> ModelOutput(logits (B, n_classes), loss)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, config.channels, config.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        self.positions = config.build_positions(config.n_patches + 1)
        self.norm = embedding_norm(config)
        self.dropout = nn.Dropout(config.dropout)
        self.stack = BlockStack(config, config.n_layers, self.positions)
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
        tokens = self.patch_embed(images)  # (B, C, H, W) -> (B, N, D)
        cls = self.cls_token.expand(len(images), -1, -1)  # (B, 1, D)
        positions = torch.arange(tokens.shape[1] + 1, device=images.device)  # (N + 1,)
        x = torch.cat([cls, tokens], dim=1)  # (B, N + 1, D); patch projections are not rescaled
        added = self.positions.embed(positions)  # (N + 1, D), or None for schemes acting in attention
        x = self.dropout(self.norm(x if added is None else x + added))
        record = {"embeddings": x} if return_intermediates else None
        x = self.stack(x, positions=positions, record=record)
        logits = self.head(x[:, 0])  # (B, n_classes) from the class token
        loss = lm_loss(logits, labels) if labels is not None else None
        return ModelOutput(logits, loss, record)
