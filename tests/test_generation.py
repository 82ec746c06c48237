"""Logits filters and generate(): hand-worked filters, sort-based references, KV-cache parity, seeds."""

import math

import pytest
import torch

from fmblocks.errors import ConfigError, DataError, ShapeError
from fmblocks.generation import (
    apply_temperature, filter_logits, generate, generate_seq2seq, left_pad, top_k_filter, top_p_filter,
)
from fmblocks.models import build_model, preset

INF = float("-inf")


@pytest.fixture(scope="module")
def decoder() -> torch.nn.Module:
    torch.manual_seed(0)
    config = preset("gpt2-style", vocab_size=50, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=64)
    return build_model(config).eval()


# --- filters: hand-worked examples ---------------------------------------------------------------


def test_temperature_hand_worked() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, 3.0])
    # (logits - max) / 2: the softmax of logits / 2
    assert torch.equal(apply_temperature(logits, 2.0), torch.tensor([-1.0, 0.0, -0.5, 0.0]))
    assert torch.allclose(apply_temperature(logits, 2.0).softmax(-1), (logits / 2).softmax(-1))
    # temperature 0: only the first argmax survives (greedy)
    assert torch.equal(apply_temperature(logits, 0.0), torch.tensor([INF, 3.0, INF, INF]))


def test_top_k_hand_worked() -> None:
    logits = torch.tensor([0.1, 2.0, -1.0, 0.5])
    assert torch.equal(top_k_filter(logits, 2), torch.tensor([INF, 2.0, INF, 0.5]))
    assert torch.equal(top_k_filter(logits, 10), logits)


def test_top_p_hand_worked() -> None:
    logits = torch.tensor([0.5, 0.2, 0.2, 0.1]).log()  # probabilities 0.5, 0.2, 0.2, 0.1
    kept = top_p_filter(logits, 0.6).isfinite()
    assert kept.tolist() == [True, True, False, False]  # 0.5 < 0.6 <= 0.5 + 0.2
    assert top_p_filter(logits, 0.5).isfinite().tolist() == [True, False, False, False]
    assert top_p_filter(logits, 1.0).isfinite().all()


def test_filters_refuse_bad_values() -> None:
    logits = torch.zeros(5)
    with pytest.raises(ConfigError, match="temperature"):
        apply_temperature(logits, -1.0)
    with pytest.raises(ConfigError, match="top_k"):
        top_k_filter(logits, 0)
    with pytest.raises(ConfigError, match="top_p"):
        top_p_filter(logits, 0.0)


@pytest.mark.parametrize("option, value", [
    ("temperature", float("nan")), ("temperature", float("inf")), ("temperature", "hot"), ("temperature", True),
    ("top_k", 2.5), ("top_k", 2.0), ("top_k", float("inf")), ("top_k", True), ("top_k", "3"),
    ("top_p", float("nan")), ("top_p", 1.5), ("top_p", float("-inf")),
])
def test_non_finite_and_non_integer_options_are_config_errors(decoder, option, value) -> None:
    with pytest.raises(ConfigError, match=option):
        filter_logits(torch.zeros(2, 5), **{option: value})
    with pytest.raises(ConfigError, match=option):  # refused before the first forward pass
        generate(decoder, torch.zeros(1, 3, dtype=torch.long), 2, **{option: value})


@pytest.mark.parametrize("value", [2.5, 2.0, -1, float("nan"), float("inf"), "2"])
def test_max_new_tokens_must_be_an_integer(decoder, value) -> None:
    with pytest.raises(ConfigError, match="max_new_tokens"):
        generate(decoder, torch.zeros(1, 3, dtype=torch.long), value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("temperature", [1e-45, 1e-300, 5e-324])
def test_tiny_temperature_is_argmax_without_overflow(dtype, temperature) -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, 2.9], [6e4, -6e4, 0.0, 5.9e4]], dtype=dtype)
    scaled = apply_temperature(logits, temperature)
    assert not scaled.isnan().any()
    probs = scaled.softmax(-1)
    assert torch.equal(probs.argmax(-1), logits.argmax(-1)) and torch.all(probs.max(-1).values == 1)


def test_tiny_top_p_keeps_the_most_likely_token(decoder) -> None:
    logits = torch.randn(6, 30)
    for p in (1e-300, 5e-324, 1e-45):
        kept = top_p_filter(logits, p).isfinite()
        assert torch.equal(kept, torch.nn.functional.one_hot(logits.argmax(-1), 30).bool())
    prompt = torch.tensor([[1, 2, 3]])
    greedy = generate(decoder, prompt, 5, temperature=0)
    assert torch.equal(generate(decoder, prompt, 5, top_p=1e-300), greedy)
    assert torch.equal(generate(decoder, prompt, 5, temperature=1e-45), greedy)


# --- filters: properties against references --------------------------------------------------------


def test_top_k_keeps_exactly_k_even_with_ties() -> None:
    logits = torch.randint(0, 4, (64, 30)).float()  # many ties
    for k in (1, 3, 7, 29):
        kept = top_k_filter(logits, k).isfinite()
        assert (kept.sum(-1) == k).all()
        # every kept logit is >= every removed one
        low_kept = logits.masked_fill(~kept, math.inf).min(-1).values
        high_removed = logits.masked_fill(kept, -math.inf).max(-1).values
        assert (low_kept >= high_removed).all()


def reference_top_p(probs: list[float], p: float) -> set[int]:
    """The smallest set with mass >= p: take tokens by decreasing probability until the mass reaches p."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, mass = set(), 0.0
    for i in order:
        kept.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return kept


def test_top_p_matches_sort_based_reference() -> None:
    logits = torch.randn(200, 40, dtype=torch.float64) * 2
    for p in (0.1, 0.5, 0.9, 0.99):
        kept = top_p_filter(logits, p).isfinite()
        for row, mask in zip(logits.softmax(-1), kept):
            expected = reference_top_p(row.tolist(), p)
            assert set(torch.nonzero(mask).flatten().tolist()) == expected
            assert row[mask].sum() >= p - 1e-12


def test_filters_compose_in_order() -> None:
    logits = torch.randn(8, 20)
    expected = top_p_filter(top_k_filter(apply_temperature(logits, 0.7), 5), 0.8)
    assert torch.equal(filter_logits(logits, temperature=0.7, top_k=5, top_p=0.8), expected)


# --- generate ------------------------------------------------------------------------------------------


def test_kv_cache_gives_same_tokens_and_logits(decoder) -> None:
    prompt = torch.randint(0, 50, (3, 5))
    for options in ({"temperature": 0.0}, {"temperature": 0.9, "top_k": 10, "top_p": 0.9}):
        runs = [
            generate(decoder, prompt, 40, use_cache=cache, return_logits=True,
                     generator=torch.Generator().manual_seed(1), **options)
            for cache in (True, False)
        ]
        (tokens_cached, logits_cached), (tokens_full, logits_full) = runs
        assert torch.equal(tokens_cached, tokens_full)
        torch.testing.assert_close(logits_cached, logits_full, atol=1e-5, rtol=0)
        assert tokens_cached.shape == (3, 45) and logits_cached.shape == (3, 40, 50)
        assert torch.equal(tokens_cached[:, :5], prompt)


def test_temperature_zero_is_argmax(decoder) -> None:
    prompt = torch.randint(0, 50, (2, 4))
    tokens, logits = generate(decoder, prompt, 10, temperature=0.0, return_logits=True)
    assert torch.equal(tokens[:, 4:], logits.argmax(-1))


def test_seeded_sampling_is_reproducible(decoder) -> None:
    prompt = torch.randint(0, 50, (4, 3))
    first = generate(decoder, prompt, 20, top_p=0.95, generator=torch.Generator().manual_seed(7))
    again = generate(decoder, prompt, 20, top_p=0.95, generator=torch.Generator().manual_seed(7))
    other = generate(decoder, prompt, 20, top_p=0.95, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_sampled_tokens_respect_top_k(decoder) -> None:
    prompt = torch.randint(0, 50, (8, 3))
    tokens, logits = generate(decoder, prompt, 15, top_k=3, return_logits=True,
                              generator=torch.Generator().manual_seed(0))
    top3 = logits.topk(3, dim=-1).indices  # (B, n, 3)
    assert (top3 == tokens[:, 3:, None]).any(-1).all()


def test_stop_tokens_end_each_sequence_and_pad(decoder) -> None:
    prompt = torch.randint(0, 50, (6, 2))
    free = generate(decoder, prompt, 30, generator=torch.Generator().manual_seed(3))
    stop = int(free[0, 2 + 4])  # sequence 0 emits this token as its 5th new token
    tokens = generate(decoder, prompt, 30, stop_tokens=[stop], pad_token=49,
                      generator=torch.Generator().manual_seed(3))
    for row_free, row in zip(free, tokens):
        new_free, new = row_free[2:].tolist(), row[2:].tolist()
        if stop in new_free:
            end = new_free.index(stop) + 1
            assert new[:end] == new_free[:end]
            assert all(t == 49 for t in new[end:])
        else:
            assert new == new_free[: len(new)]
    assert tokens.shape[1] <= free.shape[1]


def test_prompt_plus_new_tokens_longer_than_context_is_refused(decoder) -> None:
    with pytest.raises(DataError, match=r"prompt length 60 \+ max_new_tokens 10 exceeds the model's max_len 64"):
        generate(decoder, torch.zeros(1, 60, dtype=torch.long), 10)


@pytest.mark.parametrize("use_cache", [True, False])
def test_left_padded_prompts_continue_as_each_prompt_alone(decoder, use_cache: bool) -> None:
    """Reference: generate() on each prompt by itself (greedy), without padding."""
    prompts = [torch.randint(1, 50, (n,)).tolist() for n in (6, 2, 4)]
    padded, keep = left_pad(prompts, pad_token=49)
    assert padded[1].tolist() == [49] * 4 + prompts[1] and keep[1].tolist() == [0] * 4 + [1] * 2
    width = padded.shape[1]
    tokens = generate(decoder, padded, 12, temperature=0.0, attention_mask=keep, use_cache=use_cache)
    for row, prompt in enumerate(prompts):
        alone = generate(decoder, torch.tensor([prompt]), 12, temperature=0.0)
        assert torch.equal(tokens[row, width:], alone[0, len(prompt):])
    with pytest.raises(ShapeError, match="attention_mask must match the prompt"):
        generate(decoder, padded, 2, attention_mask=keep[:, 1:])


def test_left_pad_refuses_empty_input() -> None:
    for prompts in ([], [[1, 2], []]):
        with pytest.raises(ShapeError, match="no empty prompt"):
            left_pad(prompts)


def test_generate_restores_training_mode(decoder) -> None:
    decoder.train()
    generate(decoder, torch.zeros(1, 2, dtype=torch.long), 2)
    assert decoder.training
    decoder.eval()


# --- encoder-decoder -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seq2seq() -> torch.nn.Module:
    torch.manual_seed(0)
    config = preset("transformer-base", vocab_size=30, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=24,
                    dropout=0.1)
    return build_model(config).eval()


def test_seq2seq_greedy_equals_argmax_of_full_forward_passes(seq2seq) -> None:
    """Reference: re-run the whole model on the growing target and take the argmax each time."""
    source, start = torch.randint(1, 30, (3, 7)), 0
    tokens = generate_seq2seq(seq2seq, source, start, 12, temperature=0.0)
    expected = torch.full((3, 1), start)
    for _ in range(12):
        next_token = seq2seq(source, expected).logits[:, -1].argmax(-1)
        expected = torch.cat([expected, next_token[:, None]], dim=1)
    assert torch.equal(tokens, expected)


def test_seq2seq_continues_the_start_of_each_target(seq2seq) -> None:
    """A (B, T0) start is kept and extended as full forward passes on the growing target extend it."""
    source, prefix = torch.randint(1, 30, (2, 6)), torch.randint(1, 30, (2, 3))
    tokens = generate_seq2seq(seq2seq, source, prefix, 5, temperature=0.0)
    expected = prefix
    for _ in range(5):
        expected = torch.cat([expected, seq2seq(source, expected).logits[:, -1].argmax(-1)[:, None]], dim=1)
    assert torch.equal(tokens, expected)
    with pytest.raises(ShapeError, match="one row per source"):
        generate_seq2seq(seq2seq, source, prefix[:1], 2)


def test_seq2seq_cache_and_source_padding_change_nothing(seq2seq) -> None:
    source = torch.randint(1, 30, (2, 6))
    padded = torch.cat([source, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    keep = torch.tensor([[1] * 6 + [0] * 4] * 2)
    options = dict(top_p=0.9, return_logits=True)
    runs = [generate_seq2seq(seq2seq, source, 0, 15, use_cache=True, generator=torch.Generator().manual_seed(4),
                             **options),
            generate_seq2seq(seq2seq, source, 0, 15, use_cache=False, generator=torch.Generator().manual_seed(4),
                             **options),
            generate_seq2seq(seq2seq, padded, 0, 15, attention_mask=keep, generator=torch.Generator().manual_seed(4),
                             **options)]
    (tokens, logits), *others = runs
    assert tokens.shape == (2, 16) and logits.shape == (2, 15, 30)
    for other_tokens, other_logits in others:
        assert torch.equal(other_tokens, tokens)
        torch.testing.assert_close(other_logits, logits, atol=1e-5, rtol=0)


def test_seq2seq_keeps_the_models_mode_and_checks_the_mask(seq2seq) -> None:
    source = torch.randint(1, 30, (1, 5))
    for training in (True, False):
        seq2seq.train(training)
        generate_seq2seq(seq2seq, source, 0, 3)
        assert seq2seq.training == training
    seq2seq.eval()
    with pytest.raises(ShapeError, match="attention_mask must match input_ids"):
        generate_seq2seq(seq2seq, source, 0, 3, attention_mask=torch.ones(1, 4))
