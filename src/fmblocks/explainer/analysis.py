"""What the explainer shows, as plain data: any decoder model plus any text tokenizer -> dicts of lists.

    analyze(model, tok, "def add(a, b):")  ->  {"tokens": [...], "ids": [...], "embeddings_2d": (T, 2),
        "attention": [layer][head] (T, T), "next": [{"token", "id", "p", "p_sampled"}, ...], ...}

Attention is the list of per-layer (B, H, T, T) weights the model returns with
`return_intermediates=True` (batch 0), so any fmblocks decoder works without a fork of the model.
`p` is softmax(logits) of the last position; `p_sampled` is the distribution that sampling draws from
after temperature, top-k and top-p (zero for removed candidates). The embedding map projects the
(T, D) input embeddings on their first two principal components (centred SVD).
Limits: texts longer than the model's context keep their last max_len tokens.
"""

from typing import Any

import torch
from torch import nn

from fmblocks.errors import DataError
from fmblocks.generation import filter_logits, generate
from fmblocks.tokenizers.base import Tokenizer


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    """(T, D) -> (T, 2): coordinates on the first two principal axes (zeros where there are fewer)."""
    centred = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # vh (min(T, D), D)
    coords = centred @ vh[:2].T  # (T, <=2)
    return torch.nn.functional.pad(coords, (0, 2 - coords.shape[1]))


def encode_for(model: nn.Module, tokenizer: Tokenizer, text: str) -> list[int]:
    """The text's ids, cut to the model's context (last max_len tokens); DataError for an empty text."""
    ids = tokenizer.encode(text)
    if not ids:
        raise DataError("the text gives no tokens: type at least one character")
    return ids[-model.config.max_len :]


def token_strings(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each id decoded on its own (byte-level pieces of a character show as U+FFFD)."""
    return [tokenizer.decode([i]) for i in ids]


@torch.no_grad()
def analyze(
    model: nn.Module,
    tokenizer: Tokenizer,
    text: str,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    n_next: int = 15,
) -> dict[str, Any]:
    """Tokens, embedding map, attention per layer and head, and next-token probabilities for `text`."""
    model.eval()
    ids = encode_for(model, tokenizer, text)
    out = model(torch.tensor([ids]), return_intermediates=True)
    seen = out.intermediates
    logits = out.logits[0, -1]  # (V,)
    probs = logits.softmax(-1)
    sampled = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p).softmax(-1)
    best = probs.topk(min(n_next, probs.numel())).indices
    return {
        "tokens": token_strings(tokenizer, ids),
        "ids": ids,
        "embeddings_2d": pca_2d(seen["embeddings"][0]).tolist(),
        "attention": [layer[0].tolist() for layer in seen["attention"]],  # [L][H][T][T]
        "next": [
            {"id": int(i), "token": tokenizer.decode([int(i)]), "p": float(probs[i]), "p_sampled": float(sampled[i])}
            for i in best
        ],
        "n_layers": len(seen["attention"]),
        "n_heads": int(seen["attention"][0].shape[1]),
    }


@torch.no_grad()
def continue_text(
    model: nn.Module,
    tokenizer: Tokenizer,
    text: str,
    *,
    max_new_tokens: int = 40,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A sampled continuation of `text` (seeded), as the new text and its tokens."""
    ids = encode_for(model, tokenizer, text)
    room = model.config.max_len - len(ids)
    ids = ids[-(model.config.max_len - max_new_tokens):] if room < max_new_tokens else ids
    generator = torch.Generator().manual_seed(seed)
    tokens = generate(model, torch.tensor([ids]), max_new_tokens, temperature=temperature, top_k=top_k,
                      top_p=top_p, generator=generator)[0, len(ids):].tolist()
    return {"continuation": tokenizer.decode(tokens), "tokens": token_strings(tokenizer, tokens), "ids": tokens}
