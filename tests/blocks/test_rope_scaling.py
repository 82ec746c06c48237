"""RoPE scaling: hand-worked frequencies, properties, and the options refused by name.

Parity with transformers' LlamaForCausalLM for every kind lives in tests/reference/test_hub.py.
"""

import math

import pytest
import torch

from fmblocks.blocks.positional import RotaryEmbedding, build_positions
from fmblocks.blocks.rope_scaling import rope_frequencies
from fmblocks.errors import ConfigError

DIM, BASE = 8, 100.0


def test_linear_divides_every_frequency() -> None:
    plain, _ = rope_frequencies(DIM, BASE, None)
    torch.testing.assert_close(plain, torch.tensor([1.0, 100 ** -0.25, 0.1, 100 ** -0.75]))  # base^(-2i/Dh)
    scaled, factor = rope_frequencies(DIM, BASE, {"type": "linear", "factor": 4.0})
    torch.testing.assert_close(scaled, plain / 4)
    assert factor == 1.0


def test_dynamic_changes_nothing_within_the_trained_context() -> None:
    scaling = {"type": "dynamic", "factor": 2.0, "original_max_len": 16}
    plain, _ = rope_frequencies(DIM, BASE, None)
    assert torch.equal(rope_frequencies(DIM, BASE, scaling, seq_len=16)[0], plain)
    longer, _ = rope_frequencies(DIM, BASE, scaling, seq_len=32)  # base' = base * (2 * 32/16 - 1)^(8/6)
    torch.testing.assert_close(longer, rope_frequencies(DIM, BASE * 3 ** (8 / 6), None)[0])


def test_yarn_and_llama3_keep_fast_pairs_and_slow_the_slow_ones() -> None:
    plain, _ = rope_frequencies(64, 10000.0, None)
    yarn, attention = rope_frequencies(64, 10000.0, {"type": "yarn", "factor": 4.0, "original_max_len": 64})
    assert math.isclose(attention, 0.1 * math.log(4.0) + 1.0)
    llama3, _ = rope_frequencies(64, 10000.0, {"type": "llama3", "factor": 4.0, "original_max_len": 64,
                                               "low_freq_factor": 1.0, "high_freq_factor": 4.0})
    for scaled in (yarn, llama3):
        assert torch.allclose(scaled[0], plain[0]) and torch.allclose(scaled[-1], plain[-1] / 4)


def test_scaled_rotation_keeps_norms_and_relative_positions() -> None:
    rotary = RotaryEmbedding(DIM, base=BASE, scaling={"type": "yarn", "factor": 2.0, "original_max_len": 8})
    q, k = torch.randn(1, 1, 1, DIM).expand(1, 1, 3, DIM), torch.randn(1, 1, 1, DIM).expand(1, 1, 3, DIM)
    rq, rk = rotary(q, torch.tensor([5, 9, 20])), rotary(k, torch.tensor([2, 6, 17]))
    scores = (rq * rk).sum(-1)[0, 0]  # the same offset 3 at every position
    torch.testing.assert_close(scores, scores[:1].expand(3))


@pytest.mark.parametrize("scaling, message", [
    ({"type": "longrope", "factor": 2.0}, r"unknown RoPE scaling type 'longrope'; known: linear, dynamic, yarn, llama3"),
    ({"type": "dynamic", "factor": 2.0}, r"needs factor, original_max_len.*missing \['original_max_len'\]"),
    ({"type": "linear", "factor": 2.0, "beta": 1}, r"unknown \['beta'\]"),
])
def test_bad_scalings_are_refused_by_name(scaling: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_positions("rope", max_len=8, d_model=16, n_heads=2, scaling=scaling)
