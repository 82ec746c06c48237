"""VQ-VAE (van den Oord et al., 2017, "Neural Discrete Representation Learning").

    z = encoder(x)                      (B, D, h, w), h = H / 2^downsample
    k = argmin_j ||z - e_j||²           nearest codebook vector per position -> indices (B, h, w)
    q = e_k;  x̂ = decoder(q)
    loss = ||x - x̂||² + ||sg[z] - q||² + β ||z - sg[q]||²

The decoder's gradient is copied to the encoder through the non-differentiable argmin
(straight-through estimator). We return `q.detach() + (z - z.detach())`, whose value is exactly q
(so `decode(indices)` reproduces it bit for bit) and whose gradient with respect to z is the identity.

`VectorQuantizer` options:
- `ema=True`: the codebook is not learned by gradient but set to exponential moving averages of the
  encoder outputs assigned to each code (the paper's appendix; Laplace-smoothed counts); the codebook
  term then drops out of the loss, leaving the commitment term.
- `restart_after=n`: a code unused for n consecutive training steps is moved onto a random encoder
  output of the current batch (dead-code restart).
- `kmeans_init=True`: the first training batch initialises the codebook by k-means.

Limits: images must have sides divisible by 2^downsample; one codebook (no residual or product
quantisation); randomness in restarts and k-means uses torch's global generator.
"""

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fmblocks.configs import check_fields, config_from_dict
from fmblocks.errors import ConfigError, ShapeError


def kmeans(x: torch.Tensor, k: int, iters: int = 10) -> torch.Tensor:
    """k centroids (k, D) of points x (N, D): k-means++ seeding, then Lloyd's algorithm.

    Seeding picks each next centroid with probability proportional to its squared distance from the
    nearest centroid so far; in Lloyd's steps an empty cluster keeps its centroid.
    """
    chosen = [x[torch.randint(len(x), ())]]
    nearest = (x - chosen[0]).pow(2).sum(1)  # (N,) squared distance to the nearest chosen centroid
    for _ in range(k - 1):
        weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)
        chosen.append(x[torch.multinomial(weights, 1)[0]])
        nearest = torch.minimum(nearest, (x - chosen[-1]).pow(2).sum(1))
    centroids = torch.stack(chosen)  # (k, D)
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(dim=1)  # (N,)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (k, D)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


class VectorQuantizer(nn.Module):
    """z (..., D) -> (quantized (..., D), indices (...), loss scalar); `decode(indices)` == quantized exactly."""

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        *,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_after: int | None = None,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        self.codebook_size, self.dim, self.beta = codebook_size, dim, beta
        self.ema, self.decay, self.eps = ema, decay, eps
        self.restart_after, self.kmeans_init, self.kmeans_iters = restart_after, kmeans_init, kmeans_iters
        bound = 1.0 / codebook_size
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim).uniform_(-bound, bound), requires_grad=not ema)
        self.register_buffer("cluster_size", torch.zeros(codebook_size))  # EMA of assignment counts
        self.register_buffer("embed_sum", self.codebook.detach().clone())  # EMA of assigned vector sums
        self.register_buffer("steps_unused", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector (Euclidean) for each row of flat (N, D) -> (N,)."""
        codebook = self.codebook.detach()
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(1))  # (N, K)
        return distances.argmin(dim=1)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...) -> codebook vectors (..., D)."""
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ShapeError(f"code indices must lie in 0..{self.codebook_size - 1}, got {indices.min()}..{indices.max()}")
        return F.embedding(indices, self.codebook)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if z.shape[-1] != self.dim:
            raise ShapeError(f"expected vectors of size {self.dim} in the last dimension, got shape {tuple(z.shape)}")
        flat = z.reshape(-1, self.dim)  # (..., D) -> (N, D)
        if self.training and not bool(self.initialized):
            self._kmeans_initialise(flat.detach())
        indices = self.nearest(flat.detach())  # (N,)
        if self.training:
            self._update(flat.detach(), indices)
        quantized = self.decode(indices).view_as(z)  # (N, D) -> (..., D)
        commitment = F.mse_loss(z, quantized.detach())
        loss = self.beta * commitment if self.ema else F.mse_loss(quantized, z.detach()) + self.beta * commitment
        straight_through = quantized.detach() + (z - z.detach())  # value q, gradient to z the identity
        return straight_through, indices.view(z.shape[:-1]), loss

    @torch.no_grad()
    def _kmeans_initialise(self, flat: torch.Tensor) -> None:
        self.codebook.copy_(kmeans(flat, self.codebook_size, self.kmeans_iters))
        self.embed_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codebook_size).to(flat.dtype)  # (K,)
        if self.ema:
            sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)  # (K, D)
            self.cluster_size.lerp_(counts, 1 - self.decay)
            self.embed_sum.lerp_(sums, 1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
            self.codebook.copy_(self.embed_sum / smoothed[:, None])
        if self.restart_after is None:
            return
        self.steps_unused = torch.where(counts > 0, 0, self.steps_unused + 1)
        dead = torch.nonzero(self.steps_unused >= self.restart_after).flatten()
        if len(dead):
            fresh = flat[torch.randint(len(flat), (len(dead),))]
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
            self.steps_unused[dead] = 0


@dataclass
class VQVAEConfig:
    """Sizes and quantiser options of a VQ-VAE (image_size must be divisible by 2 ** downsample)."""

    image_size: int = 28
    channels: int = 1
    hidden: int = 64
    latent_dim: int = 16
    codebook_size: int = 64
    downsample: int = 2
    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    restart_after: int | None = 20
    kmeans_init: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("image_size", "channels", "hidden", "latent_dim", "codebook_size", "downsample"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"VQVAEConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.image_size % 2**self.downsample:
            raise ConfigError(f"image_size {self.image_size} is not divisible by 2**downsample = {2**self.downsample}")
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"decay must lie in (0, 1), got {self.decay}")

    @property
    def grid_size(self) -> int:
        """Side of the token grid: image_size / 2^downsample."""
        return self.image_size // 2**self.downsample

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VQVAEConfig":
        return config_from_dict(cls, data)


def _encoder(c: VQVAEConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = c.channels
    for _ in range(c.downsample):  # each halves the side
        layers += [nn.Conv2d(width, c.hidden, 4, stride=2, padding=1), nn.ReLU()]
        width = c.hidden
    layers += [nn.Conv2d(c.hidden, c.hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(c.hidden, c.latent_dim, 1)]
    return nn.Sequential(*layers)


def _decoder(c: VQVAEConfig) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c.latent_dim, c.hidden, 3, padding=1), nn.ReLU()]
    for step in range(c.downsample):  # each doubles the side
        last = step == c.downsample - 1
        layers.append(nn.ConvTranspose2d(c.hidden, c.channels if last else c.hidden, 4, stride=2, padding=1))
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VQVAE(nn.Module):
    """images (B, C, H, W) in [0, 1] -> (reconstruction (B, C, H, W), indices (B, h, w), loss)."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _encoder(config)
        self.quantizer = VectorQuantizer(
            config.codebook_size,
            config.latent_dim,
            beta=config.beta,
            ema=config.ema,
            decay=config.decay,
            restart_after=config.restart_after,
            kmeans_init=config.kmeans_init,
        )
        self.decoder = _decoder(config)

    def _check(self, images: torch.Tensor) -> None:
        c, s = self.config.channels, self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise ShapeError(f"expected images (B, {c}, {s}, {s}), got shape {tuple(images.shape)}")

    def quantize(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images -> (quantized latents (B, D, h, w), indices (B, h, w), quantiser loss)."""
        self._check(images)
        z = self.encoder(images).permute(0, 2, 3, 1)  # (B, D, h, w) -> (B, h, w, D)
        quantized, indices, loss = self.quantizer(z)
        return quantized.permute(0, 3, 1, 2), indices, loss  # (B, h, w, D) -> (B, D, h, w)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> code indices (B, h, w)."""
        return self.quantize(images)[1]

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """code indices (B, h, w) -> reconstruction (B, C, H, W) (unclamped)."""
        quantized = self.quantizer.decode(indices).permute(0, 3, 1, 2)  # (B, h, w, D) -> (B, D, h, w)
        return self.decoder(quantized)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (reconstruction, indices, loss = reconstruction MSE + quantiser loss)."""
        quantized, indices, vq_loss = self.quantize(images)
        reconstruction = self.decoder(quantized)
        return reconstruction, indices, F.mse_loss(reconstruction, images) + vq_loss
