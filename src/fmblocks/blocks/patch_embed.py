"""Image patches: patchify / unpatchify and the ViT's patch embedding (shared by tokenizers and models).

An image is split into non-overlapping P x P patches read in raster order (left to right, then top to
bottom); each patch is flattened as a (P, P, C) array, row by row, channel fastest:

    image (C, H, W)  ->  patches (N, P·P·C),   N = (H / P) · (W / P)
    patch n = (row r, col c) with n = r · (W / P) + c;  entry (i, j, ch) sits at (i · P + j) · C + ch

so a channels-last image (H, W, C) and a channels-first one give the same patches
(`channels_last=True` selects the former). `unpatchify` is the exact inverse. `PatchEmbed` is a linear
map of the flattened patches, which equals a Conv2d with kernel = stride = P
(`PatchEmbed.from_conv` / `to_conv` convert the weights: conv.weight (D, C, P, P) <-> (D, P·P·C)).
Limits: heights and widths must be divisible by P (ShapeError otherwise).
"""

import torch
from torch import nn

from fmblocks.errors import ShapeError


def check_divisible(height: int, width: int, patch_size: int) -> None:
    if patch_size < 1:
        raise ShapeError(f"patch size must be a positive integer, got {patch_size}")
    if height % patch_size or width % patch_size:
        raise ShapeError(f"image size {height}x{width} is not divisible by the patch size {patch_size}")


def patchify(images: torch.Tensor, patch_size: int, *, channels_last: bool = False) -> torch.Tensor:
    """(C, H, W) or (B, C, H, W) -> (N, P·P·C) or (B, N, P·P·C); (H, W, C) / (B, H, W, C) if `channels_last`."""
    if images.ndim not in (3, 4):
        raise ShapeError(f"patchify expects an image of rank 3 or a batch of rank 4, got shape {tuple(images.shape)}")
    batch = images if images.ndim == 4 else images.unsqueeze(0)
    if not channels_last:
        batch = batch.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
    b, h, w, c = batch.shape
    p = patch_size
    check_divisible(h, w, p)
    patches = batch.reshape(b, h // p, p, w // p, p, c)  # (B, H/P, P, W/P, P, C)
    patches = patches.permute(0, 1, 3, 2, 4, 5)  # -> (B, H/P, W/P, P, P, C)
    patches = patches.reshape(b, (h // p) * (w // p), p * p * c)  # -> (B, N, P·P·C)
    return patches if images.ndim == 4 else patches[0]


def unpatchify(
    patches: torch.Tensor, image_size: int | tuple[int, int], patch_size: int, *, channels_last: bool = False
) -> torch.Tensor:
    """Exact inverse of `patchify`: (N, P·P·C) or (B, N, P·P·C) -> image(s) of `image_size` (H, W)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    p = patch_size
    check_divisible(h, w, p)
    if patches.ndim not in (2, 3):
        raise ShapeError(f"unpatchify expects patches of rank 2 or 3, got shape {tuple(patches.shape)}")
    batch = patches if patches.ndim == 3 else patches.unsqueeze(0)
    b, n, dim = batch.shape
    if n != (h // p) * (w // p) or dim % (p * p):
        raise ShapeError(
            f"patches of shape {tuple(patches.shape)} do not tile a {h}x{w} image with {p}x{p} patches "
            f"(expected {(h // p) * (w // p)} patches of size P·P·C)"
        )
    c = dim // (p * p)
    images = batch.reshape(b, h // p, w // p, p, p, c)  # (B, N, P·P·C) -> (B, H/P, W/P, P, P, C)
    images = images.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)  # -> (B, H/P, P, W/P, P, C) -> (B, H, W, C)
    if not channels_last:
        images = images.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    return images if patches.ndim == 3 else images[0]


class PatchEmbed(nn.Module):
    """Patch embedding of the ViT: x (B, C, H, W) -> (B, N, D) = patchify(x) @ W^T + b.

    Identical to `nn.Conv2d(C, D, kernel_size=P, stride=P)` followed by flattening the grid in raster
    order; `from_conv` and `to_conv` move weights between the two forms.
    """

    def __init__(self, patch_size: int, channels: int, d_model: int, *, bias: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.channels = channels
        self.proj = nn.Linear(patch_size * patch_size * channels, d_model, bias=bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ShapeError(f"PatchEmbed expects (B, {self.channels}, H, W) images, got shape {tuple(images.shape)}")
        return self.proj(patchify(images, self.patch_size))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "PatchEmbed":
        """The PatchEmbed computing exactly what `conv` (kernel = stride = P, no padding) computes."""
        d_model, channels, p, q = conv.weight.shape
        if p != q or conv.stride != (p, p) or conv.padding != (0, 0):
            raise ShapeError(f"conv must have a square kernel, stride = kernel and no padding; got {conv}")
        embed = cls(p, channels, d_model, bias=conv.bias is not None)
        with torch.no_grad():
            embed.proj.weight.copy_(conv.weight.permute(0, 2, 3, 1).reshape(d_model, -1))  # (D, C, P, P) -> (D, P·P·C)
            if conv.bias is not None:
                embed.proj.bias.copy_(conv.bias)
        return embed

    def to_conv(self) -> nn.Conv2d:
        """The equivalent `nn.Conv2d(C, D, kernel_size=P, stride=P)`."""
        p, c, d_model = self.patch_size, self.channels, self.proj.out_features
        conv = nn.Conv2d(c, d_model, kernel_size=p, stride=p, bias=self.proj.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(self.proj.weight.reshape(d_model, p, p, c).permute(0, 3, 1, 2))  # (D, P·P·C) -> (D, C, P, P)
            if self.proj.bias is not None:
                conv.bias.copy_(self.proj.bias)
        return conv
