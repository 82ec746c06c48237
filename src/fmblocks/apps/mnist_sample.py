"""Drawing digits from a class-conditioned MNIST decoder, with classifier-free guidance.

`sample_digits` starts each sequence from its class token and lets `fmblocks.generation.generate`
draw the 196 patch symbols (temperature, top-k, top-p; a seeded generator). Generation sees the
decoder through `GuidedSymbols`, which changes the next-token logits in two ways:

  guidance (Ho & Salimans 2022)   l = (1 + w) l_c - w l_u,   l_c = logits(s_t | c, s_<t),
                                                             l_u = logits(s_t | <no class>, s_<t)
                                  w = 0 is plain conditional sampling; w > 0 leans harder on the class
                                  (the convention of fmblocks.diffusion). Both streams run as one
                                  doubled batch (B -> 2B) in the same KV caches.
  symbols only                    class and <no class> tokens get -inf, so a sample is always an image.

Limits: guidance needs a decoder trained with class dropout (it must know <no class>); w >= 0.
"""

from typing import Any

import torch
from torch import nn

from fmblocks.apps.mnist_ar import N_PATCHES, N_SYMBOLS, NO_CLASS, class_tokens, decode_sequences
from fmblocks.diffusion import check_guidance
from fmblocks.generation import generate
from fmblocks.models import ModelOutput


class GuidedSymbols(nn.Module):
    """A decoder seen by `generate()`: guided logits over the 16 patch symbols only (see module docstring)."""

    def __init__(self, decoder: nn.Module, guidance: float = 0.0) -> None:
        super().__init__()
        self.decoder, self.guidance, self.config = decoder, check_guidance(guidance), decoder.config
        self.train(decoder.training)  # generate() restores this mode on exit

    def new_caches(self) -> list:
        return self.decoder.new_caches()

    def forward(self, input_ids: torch.Tensor, *, caches: list | None = None, **kwargs: Any) -> ModelOutput:
        if self.guidance == 0.0:
            logits = self.decoder(input_ids, caches=caches, **kwargs).logits
        else:
            unconditional = input_ids.clone()
            if not caches or caches[0].length == 0:  # this call holds position 0, the class token
                unconditional[:, 0] = NO_CLASS
            both = self.decoder(torch.cat([input_ids, unconditional]), caches=caches, **kwargs).logits  # (2B, T, V)
            conditional, unconditional_logits = both.chunk(2)  # (B, T, V) each
            logits = (1 + self.guidance) * conditional - self.guidance * unconditional_logits
        logits[..., N_SYMBOLS:] = float("-inf")
        return ModelOutput(logits)


def sample_digits(
    decoder: nn.Module,
    labels: torch.Tensor,
    *,
    guidance: float = 0.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Draw one binary digit per requested class in `labels` (N,) -> (N, 28, 28) uint8 in {0, 1}."""
    prompt = class_tokens(labels)[:, None]  # (N, 1)
    generator = torch.Generator(device=prompt.device).manual_seed(seed)
    sequences = generate(GuidedSymbols(decoder, guidance), prompt, N_PATCHES, temperature=temperature, top_k=top_k,
                         top_p=top_p, generator=generator)
    return decode_sequences(sequences)[0]
