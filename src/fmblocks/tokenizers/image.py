"""Images as tokens: square patches (continuous) and 2x2 binary patches (16 discrete symbols).

Convention (one for the whole module). An image is split into non-overlapping P x P patches read in
raster order (left to right, then top to bottom); each patch is flattened as a (P, P, C) array, row
by row, channel fastest:

    image (C, H, W)  ->  patches (N, P·P·C),   N = (H / P) · (W / P)
    patch n = (row r, col c) with n = r · (W / P) + c;  entry (i, j, ch) sits at (i · P + j) · C + ch

so a channels-last image (H, W, C) and a channels-first one give the same patches
(`channels_last=True` selects the former). `unpatchify` is the exact inverse. `PatchEmbed` is a linear
map of the flattened patches, which equals a Conv2d with kernel = stride = P
(`PatchEmbed.from_conv` / `to_conv` convert the weights: conv.weight (D, C, P, P) <-> (D, P·P·C)).

Binary patches (`BinaryPatchTokenizer`): pixel -> bit (pixel >= threshold; by default 128 for integer
images, 0.5 for floating ones; bool images and integer images already in {0, 1}, such as `decode`'s
output, are kept as they are), then each P x P block (P = 2 by default) -> one symbol in
range(2 ** (P·P)): the block's bits in raster order, top-left the most significant bit. For 2x2:

    [[a, b],
     [c, d]]  ->  8a + 4b + 2c + d        a 28x28 digit -> 196 tokens in raster order of blocks

Limits: heights and widths must be divisible by P (ShapeError otherwise); binarisation loses grey
levels, so the binary tokenizer is lossless only on binary images.
"""

from typing import Any

import torch
from torch import nn

from fmblocks.errors import ShapeError
from fmblocks.tokenizers.base import TOKENIZERS, Tokenizer, check_id_tensor


def _check_divisible(height: int, width: int, patch_size: int) -> None:
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
    _check_divisible(h, w, p)
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
    _check_divisible(h, w, p)
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


@TOKENIZERS.register("patch")
class PatchTokenizer(Tokenizer):
    """Continuous patch "tokens": image (C, H, W) or (B, C, H, W) -> float patches (N, P·P·C); exact inverse.

    There is no discrete vocabulary (`vocab_size` is 0): the patches go through `PatchEmbed`.
    """

    kind = "patch"
    lossless = True

    def __init__(self, patch_size: int, image_size: int | tuple[int, int], channels: int = 1) -> None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        _check_divisible(h, w, patch_size)
        self.patch_size, self.image_size, self.channels = patch_size, (h, w), channels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (3, 4) or tuple(x.shape[-3:]) != (self.channels, *self.image_size):
            raise ShapeError(f"expected images (..., {self.channels}, {self.image_size[0]}, {self.image_size[1]}), got {tuple(x.shape)}")
        return patchify(x, self.patch_size)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        return unpatchify(ids, self.image_size, self.patch_size)

    @property
    def vocab_size(self) -> int:
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {"patch_size": self.patch_size, "image_size": list(self.image_size), "channels": self.channels}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "PatchTokenizer":
        return cls(data["patch_size"], tuple(data["image_size"]), data["channels"])


def binarize(images: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """Bool image(s): pixel >= threshold.

    Default threshold: 0.5 for floating images, 128 for integer ones, except that integer images
    already in {0, 1} (max <= 1) are taken as binary (threshold 1). Bool images are returned as they are.
    """
    if images.dtype == torch.bool:
        return images
    if threshold is None:
        if images.is_floating_point():
            threshold = 0.5
        else:
            threshold = 1 if images.numel() == 0 or int(images.max()) <= 1 else 128
    return images >= threshold


@TOKENIZERS.register("binary-patch")
class BinaryPatchTokenizer(Tokenizer):
    """Binary P x P patches as symbols: image (H, W) or (B, H, W) -> LongTensor (N,) or (B, N); see module doc.

    decode(ids) -> uint8 image(s) in {0, 1}. Lossless on binary images (`lossless` is False because
    grey levels are lost).
    """

    kind = "binary-patch"
    lossless = False

    def __init__(self, image_size: int | tuple[int, int] = 28, patch_size: int = 2, threshold: float | None = None) -> None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        _check_divisible(h, w, patch_size)
        if patch_size > 4:
            raise ShapeError(f"binary patches larger than 4x4 would need 2**{patch_size ** 2} symbols; got patch size {patch_size}")
        self.image_size, self.patch_size, self.threshold = (h, w), patch_size, threshold
        bits = patch_size * patch_size
        self._weights = 2 ** torch.arange(bits - 1, -1, -1)  # (P·P,): top-left is the most significant bit

    @property
    def n_tokens(self) -> int:
        """Tokens per image: (H / P) · (W / P)."""
        return (self.image_size[0] // self.patch_size) * (self.image_size[1] // self.patch_size)

    def encode(self, x: Any) -> torch.Tensor:
        images = torch.as_tensor(x)
        if images.ndim not in (2, 3) or tuple(images.shape[-2:]) != self.image_size:
            h, w = self.image_size
            raise ShapeError(f"expected an image ({h}, {w}) or a batch (B, {h}, {w}), got shape {tuple(images.shape)}")
        bits = binarize(images, self.threshold).long().unsqueeze(-3)  # (..., H, W) -> (..., 1, H, W)
        patches = patchify(bits, self.patch_size)  # (..., N, P·P) in raster order within each patch
        return patches @ self._weights  # (..., N)

    def decode(self, ids: Any) -> torch.Tensor:
        tokens = check_id_tensor(ids, self.vocab_size)
        if tokens.ndim not in (1, 2) or tokens.shape[-1] != self.n_tokens:
            raise ShapeError(f"expected {self.n_tokens} tokens per image, (N,) or (B, N); got shape {tuple(tokens.shape)}")
        bits = (tokens.unsqueeze(-1) // self._weights) % 2  # (..., N) -> (..., N, P·P)
        return unpatchify(bits.to(torch.uint8), self.image_size, self.patch_size)[..., 0, :, :]  # (..., 1, H, W) -> (..., H, W)

    @property
    def vocab_size(self) -> int:
        return 2 ** (self.patch_size * self.patch_size)

    def to_dict(self) -> dict[str, Any]:
        return {"image_size": list(self.image_size), "patch_size": self.patch_size, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "BinaryPatchTokenizer":
        return cls(tuple(data["image_size"]), data["patch_size"], data["threshold"])
