"""Autoregressive generation: pure logits filters composed in `generate()`, with a KV cache.

Filters map logits (..., V) to logits of the same shape; a removed candidate gets -inf:
  apply_temperature(l, T)  (l - max l) / T, the softmax of l / T; T = 0 keeps only the argmax (greedy decoding)
  top_k_filter(l, k)       keeps exactly the k largest logits (ties broken by index)
  top_p_filter(l, p)       nucleus: keeps the smallest set of most likely tokens whose mass is >= p (at least one)
Their options are checked by `check_sampling` (temperature a finite number >= 0, top_k an integer >= 1,
top_p a finite number in (0, 1]; ConfigError otherwise), which callers use to refuse bad options before
any model work.
`generate()` applies them in that order, samples from softmax(filtered logits) with an optional
seeded `torch.Generator`, and feeds only the new token to the model when `use_cache` (the keys and
values of earlier positions live in one KVCache per layer). A conditioning prefix (e.g. a class
token) is simply the start of the prompt.

Stop tokens: a sequence ends after it emits one of `stop_tokens`; its later positions hold
`pad_token` (default: the first stop token); generation ends early once every sequence has stopped,
so the result has T0 + n columns with n <= max_new_tokens.
Prompts of different lengths: `left_pad` them and pass its `attention_mask` (B, T0), 0 on the padding;
each row then continues exactly as its prompt alone would (decoders that take attention_mask).
Encoder-decoder models: `generate_seq2seq` encodes the source once and runs `generate()` on the decoder
reading that memory, starting from `start_token`.
Limits: `generate()` needs a `CausalLM` (below): `model(input_ids, caches=..., only_last=True)`,
`model.new_caches()` and `model.config.max_len`; prompt + new tokens must fit in max_len (DataError
otherwise); no beam search.
"""

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, Protocol

import torch

from fmblocks.errors import ConfigError, DataError, ShapeError
from fmblocks.models.output import ModelOutput


class CausalLM(Protocol):
    """What `generate()` needs from a model: a config with max_len, per-layer caches, and next-token logits."""

    config: Any
    training: bool

    def new_caches(self) -> list: ...

    def __call__(self, input_ids: torch.Tensor, *, caches: list | None = None, only_last: bool = False,
                 attention_mask: torch.Tensor | None = None) -> ModelOutput: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


def is_number(value: object) -> bool:
    """True for a finite real number that is not a bool (True/False are not option values)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: object) -> bool:
    """True for an integer that is not a bool (2.0 and 2.5 are not integers here)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_temperature(temperature: float) -> float:
    """`temperature` as a float, or ConfigError unless it is a finite number >= 0."""
    if not (is_number(temperature) and temperature >= 0):
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    return float(temperature)


def check_top_k(k: int) -> int:
    """`k` as an int, or ConfigError unless it is an integer >= 1."""
    if not (is_integer(k) and k >= 1):
        raise ConfigError(f"top_k must be an integer >= 1, got {k!r}")
    return int(k)


def check_top_p(p: float) -> float:
    """`p` as a float, or ConfigError unless it is a finite number in (0, 1]."""
    if not (is_number(p) and 0 < p <= 1):
        raise ConfigError(f"top_p must be a number in (0, 1], got {p!r}")
    return float(p)


def check_max_new_tokens(n: int) -> int:
    """`n` as an int, or ConfigError unless it is an integer >= 0."""
    if not (is_integer(n) and n >= 0):
        raise ConfigError(f"max_new_tokens must be an integer >= 0, got {n!r}")
    return int(n)


def check_sampling(*, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """ConfigError for the first bad option of `filter_logits` (None turns top-k / top-p off)."""
    check_temperature(temperature)
    if top_k is not None:
        check_top_k(top_k)
    if top_p is not None:
        check_top_p(top_p)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(logits - max) / temperature, the softmax of logits / temperature; 0 keeps only the argmax (first on ties).

    The division runs in float64, where every positive Python float is representable, so a tiny
    temperature cannot overflow to NaN: it leaves the argmax (and its exact ties) at 0, the rest at -inf.
    """
    temperature = check_temperature(temperature)
    if temperature == 0:
        best = logits.argmax(dim=-1, keepdim=True)
        return torch.full_like(logits, float("-inf")).scatter(-1, best, logits.gather(-1, best))
    shifted = logits.double() - logits.amax(dim=-1, keepdim=True).double()  # <= 0, the max exactly 0
    return (shifted / temperature).to(logits.dtype)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits of the last dimension; the others become -inf."""
    k = check_top_k(k)
    if k >= logits.shape[-1]:
        return logits
    keep = logits.topk(k, dim=-1).indices
    return torch.full_like(logits, float("-inf")).scatter(-1, keep, logits.gather(-1, keep))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most probable tokens whose probability mass is >= p (never fewer than one)."""
    p = check_top_p(p)
    ordered, order = logits.sort(dim=-1, descending=True, stable=True)
    probs = ordered.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False  # the most likely token stays even where p rounds to 0 in the logits' dtype
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(
    logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Temperature, then top-k, then top-p."""
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample(logits: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of (B, V) filtered logits, drawn from their softmax."""
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def left_pad(prompts: Sequence[Sequence[int]], pad_token: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists of any lengths >= 1 -> (ids (B, T0), attention_mask (B, T0)), padded on the left."""
    if not prompts or min(map(len, prompts)) < 1:
        raise ShapeError("left_pad needs at least one prompt and no empty prompt")
    width = max(map(len, prompts))
    ids = torch.tensor([[pad_token] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
    return ids, mask


@torch.no_grad()
def generate(
    model: CausalLM,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_tokens: Sequence[int] | None = None,
    pad_token: int | None = None,
    attention_mask: torch.Tensor | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    return_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Extend `prompt` (B, T0) by up to `max_new_tokens` tokens -> (B, T0 + n).

    With return_logits=True also returns the model's raw (unfiltered) next-token logits (B, n, V).
    """
    if prompt.ndim != 2 or prompt.shape[1] < 1 or prompt.dtype != torch.long:
        raise ShapeError(f"prompt must be a (B, T0) long tensor with T0 >= 1, got {tuple(prompt.shape)} {prompt.dtype}")
    max_new_tokens = check_max_new_tokens(max_new_tokens)
    check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    max_len = model.config.max_len
    if prompt.shape[1] + max_new_tokens > max_len:
        raise DataError(
            f"prompt length {prompt.shape[1]} + max_new_tokens {max_new_tokens} exceeds the model's max_len {max_len}")
    if attention_mask is not None and attention_mask.shape != prompt.shape:
        raise ShapeError(
            f"attention_mask must match the prompt {tuple(prompt.shape)}, got {tuple(attention_mask.shape)}")
    stops = torch.tensor(list(stop_tokens or []), dtype=torch.long, device=prompt.device)
    pad = pad_token if pad_token is not None else (int(stops[0]) if len(stops) else 0)

    batch, start = prompt.shape
    tokens = torch.cat([prompt, prompt.new_full((batch, max_new_tokens), pad)], dim=1)  # (B, T0 + max_new)
    keep = None if attention_mask is None else torch.cat(  # (B, T0 + max_new): the new tokens are all kept
        [attention_mask.bool(), attention_mask.new_ones((batch, max_new_tokens), dtype=torch.bool)], dim=1)
    done = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    all_logits = []
    was_training = model.training
    model.eval()
    try:
        caches = model.new_caches() if use_cache else None
        end = start
        while end < start + max_new_tokens:
            step_input = tokens[:, end - 1 : end] if use_cache and end > start else tokens[:, :end]
            masking = {} if keep is None else {"attention_mask": keep[:, :end]}
            logits = model(step_input, caches=caches, only_last=True, **masking).logits[:, -1]  # (B, V)
            if return_logits:
                all_logits.append(logits)
            if temperature == 0:  # greedy: the filters could only keep the argmax
                next_token = logits.argmax(-1)
            else:
                next_token = sample(filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p),
                                    generator=generator)
            tokens[:, end] = next_token.masked_fill(done, pad)
            end += 1
            if len(stops):
                done = done | torch.isin(tokens[:, end - 1], stops)
                if done.all():
                    break
    finally:
        model.train(was_training)
    tokens = tokens[:, :end]
    if return_logits:
        empty = prompt.new_zeros((prompt.shape[0], 0, 0), dtype=torch.float)
        return tokens, torch.stack(all_logits, dim=1) if all_logits else empty
    return tokens


class _DecoderOverMemory(torch.nn.Module):
    """An encoder-decoder seen by `generate()` as a decoder: its decoder reading a fixed encoder memory."""

    def __init__(self, model: torch.nn.Module, memory: torch.Tensor, source_mask: torch.Tensor | None) -> None:
        super().__init__()
        self.model, self.memory, self.source_mask, self.config = model, memory, source_mask, model.config
        self.train(model.training)  # generate() restores this mode on exit

    def new_caches(self) -> list:
        return self.model.new_caches()

    def forward(self, input_ids: torch.Tensor, *, caches: list | None = None, only_last: bool = False) -> ModelOutput:
        return ModelOutput(self.model.decode(input_ids, self.memory, self.source_mask, caches=caches,
                                             only_last=only_last))


@torch.no_grad()
def generate_seq2seq(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    start_token: int | torch.Tensor,
    max_new_tokens: int,
    *,
    attention_mask: torch.Tensor | None = None,
    **options,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Target sequences (B, T0 + n) for the sources `input_ids` (B, S) of an encoder-decoder `model`.

    The source is encoded once (padding marked 0 in `attention_mask`); the decoder starts from
    `start_token` (an id: T0 = 1) or from the start of each target, a (B, T0) long tensor, and extends
    it by up to `max_new_tokens` tokens; `options` are `generate()`'s (temperature, top_k, top_p,
    stop_tokens, pad_token, use_cache, generator, return_logits).
    """
    was_training = model.training
    model.eval()
    try:
        source_mask = model.source_mask(input_ids, attention_mask)  # (B, 1, 1, S) or None
        memory = model.encode(input_ids, attention_mask)  # (B, S, D)
    finally:
        model.train(was_training)
    if isinstance(start_token, torch.Tensor):
        if start_token.ndim != 2 or start_token.shape[0] != input_ids.shape[0]:
            raise ShapeError(f"the start of the targets must be ({input_ids.shape[0]}, T0), one row per source, "
                             f"got {tuple(start_token.shape)}")
        prompt = start_token.to(input_ids.device)
    else:
        prompt = torch.full((input_ids.shape[0], 1), start_token, dtype=torch.long, device=input_ids.device)
    return generate(_DecoderOverMemory(model, memory, source_mask), prompt, max_new_tokens, **options)
