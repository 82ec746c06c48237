"""VQ-VAE codes as image tokens: a trained `fmblocks.quantizers.vqvae.VQVAE` behind the Tokenizer contract.

    tok, history = train_vq_tokenizer(images, VQVAEConfig(), steps=300)
    grid = tok.encode(image)          # (H, W) digit -> LongTensor (h, w), h = H / 2^downsample
    image2 = tok.decode(grid)         # float image in [0, 1]: a reconstruction, not the input (lossy)
    usage(grid, tok.vocab_size)       # {"perplexity": exp(entropy of code frequencies), "used": share of codes}

Images are uint8 (0..255, scaled by 1/255) or floating in [0, 1]. With one channel the shapes are
(H, W) or (B, H, W) (a (B, 1, H, W) batch is accepted too); with C > 1 they are (C, H, W) or
(B, C, H, W). Token grids come back with the same batch structure, and so do reconstructions.
Saved as JSON (the config) plus safetensors (the weights and codebook state).
"""

import math
from typing import Any

import torch
from tqdm.auto import tqdm

from fmblocks.errors import ConfigError, ShapeError
from fmblocks.quantizers.vqvae import VQVAE, VQVAEConfig
from fmblocks.tokenizers.base import TOKENIZERS, Tokenizer, check_id_tensor


def to_batch(images: Any, channels: int) -> tuple[torch.Tensor, bool]:
    """Images as a float batch (B, C, H, W) in [0, 1], and whether the input was a single image."""
    x = torch.as_tensor(images)
    x = x.float() / 255 if not x.is_floating_point() else x.float()
    single_rank = 2 if channels == 1 else 3
    if x.ndim == single_rank:
        x, single = x.unsqueeze(0), True
    elif x.ndim in (single_rank + 1, 4):
        single = False
    else:
        raise ShapeError(f"expected an image or a batch of images with {channels} channel(s), got shape {tuple(x.shape)}")
    if channels == 1 and x.ndim == 3:
        x = x.unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
    return x, single


def usage(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Codebook usage of `indices`: perplexity exp(-Σ p log p) of the code frequencies (1..K) and share of codes used."""
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).double()
    p = counts[counts > 0] / counts.sum()
    return {"perplexity": math.exp(float(-(p * p.log()).sum())), "used": float((counts > 0).double().mean())}


@TOKENIZERS.register("vq")
class VQTokenizer(Tokenizer):
    """image(s) -> grid of codebook indices (h, w); decode -> reconstruction. Lossy."""

    kind = "vq"
    lossless = False

    def __init__(self, model: VQVAE) -> None:
        self.model = model.eval()
        self.config = model.config

    @torch.no_grad()
    def encode(self, x: Any) -> torch.Tensor:
        batch, single = to_batch(x, self.config.channels)
        grid = self.model.encode(batch)  # (B, h, w)
        return grid[0] if single else grid

    @torch.no_grad()
    def decode(self, ids: Any) -> torch.Tensor:
        grid = check_id_tensor(ids, self.vocab_size)
        g = self.config.grid_size
        if grid.ndim not in (2, 3) or tuple(grid.shape[-2:]) != (g, g):
            raise ShapeError(f"expected a token grid ({g}, {g}) or a batch (B, {g}, {g}), got shape {tuple(grid.shape)}")
        single = grid.ndim == 2
        images = self.model.decode(grid.unsqueeze(0) if single else grid).clamp(0, 1)  # (B, C, H, W)
        if self.config.channels == 1:
            images = images[:, 0]  # (B, 1, H, W) -> (B, H, W)
        return images[0] if single else images

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def to_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.model.state_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "VQTokenizer":
        model = VQVAE(VQVAEConfig.from_dict(data))
        model.load_state_dict(tensors)
        return cls(model)


def train_vq_tokenizer(
    images: Any,
    config: VQVAEConfig | None = None,
    *,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[VQTokenizer, list[float]]:
    """Train a VQ-VAE on `images` with Adam for `steps` random mini-batches; -> (tokenizer, loss per step)."""
    config = config or VQVAEConfig()
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    data, _ = to_batch(images, config.channels)
    history = []
    with torch.random.fork_rng():  # seeded without disturbing the caller's generator
        torch.manual_seed(seed)
        model = VQVAE(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        bar = tqdm(range(steps), desc="vqvae", disable=not progress)
        for _ in bar:
            batch = data[torch.randint(len(data), (batch_size,))]
            _, _, loss = model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(loss.item())
            bar.set_postfix(loss=f"{history[-1]:.4f}", refresh=False)
    return VQTokenizer(model), history


def evaluate(tokenizer: VQTokenizer, images: Any) -> dict[str, float]:
    """Reconstruction MSE (on the [0, 1] pixel scale) and codebook usage on `images`."""
    data, _ = to_batch(images, tokenizer.config.channels)
    grid = tokenizer.encode(data)
    reconstruction = tokenizer.decode(grid).reshape(data.shape)  # (B, [C,] H, W) -> (B, C, H, W)
    return {"mse": float((reconstruction - data).pow(2).mean()), **usage(grid, tokenizer.vocab_size)}
