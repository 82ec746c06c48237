"""Images as tokens: square patches (continuous) and 2x2 binary patches (16 discrete symbols).

Convention (one for the whole module). An image is split into non-overlapping P x P patches read in
raster order (left to right, then top to bottom); each patch is flattened as a (P, P, C) array, row
by row, channel fastest:

    image (C, H, W)  ->  patches (N, P·P·C),   N = (H / P) · (W / P)
    patch n = (row r, col c) with n = r · (W / P) + c;  entry (i, j, ch) sits at (i · P + j) · C + ch

so a channels-last image (H, W, C) and a channels-first one give the same patches
(`channels_last=True` selects the former). `patchify`, `unpatchify` (its exact inverse) and the ViT's
`PatchEmbed` live in fmblocks.blocks.patch_embed, shared with the models.

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

from fmblocks.blocks.patch_embed import check_divisible, patchify, unpatchify
from fmblocks.errors import ShapeError
from fmblocks.tokenizers.base import TOKENIZERS, Tokenizer, check_id_tensor


@TOKENIZERS.register("patch")
class PatchTokenizer(Tokenizer):
    """Continuous patch "tokens": image (C, H, W) or (B, C, H, W) -> float patches (N, P·P·C); exact inverse.

    There is no discrete vocabulary (`vocab_size` is 0): the patches go through `PatchEmbed`.
    """

    kind = "patch"
    lossless = True

    def __init__(self, patch_size: int, image_size: int | tuple[int, int], channels: int = 1) -> None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        check_divisible(h, w, patch_size)
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
        check_divisible(h, w, patch_size)
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
