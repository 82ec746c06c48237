"""Tiny models and corpora shared by the training tests."""

from collections.abc import Callable

import pytest
import torch

from fmblocks.models import ModelConfig, build_model, preset

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. " * 3
CHARS = sorted(set(TEXT))


@pytest.fixture
def char_ids() -> torch.Tensor:
    """The corpus as character ids (N,)."""
    return torch.tensor([CHARS.index(c) for c in TEXT])


@pytest.fixture
def tiny_config() -> ModelConfig:
    return preset("gpt2-style", vocab_size=len(CHARS), d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=32)


@pytest.fixture
def make_model() -> Callable[..., torch.nn.Module]:
    """build_model(config) with its weights initialised from `seed`."""

    def make(config: ModelConfig, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return build_model(config)

    return make
