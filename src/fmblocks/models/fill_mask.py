"""Masked-LM queries: the most likely fillers of every mask token in a text, with their probabilities.

    fills = fill_mask(model, tokenizer, "The capital of France is [MASK].", top_k=5)
    fills[0].position, fills[0].candidates      4, [Candidate(id, "paris", 0.41), ...]   one per mask, in order

    p(v | text) = softmax_v(logits[position])   over the whole model vocabulary, as the masked-LM head was trained

The mask is written as the tokenizer's own mask token ([MASK] for BERT, <mask> for ESM-2); "[MASK]" is
accepted for any tokenizer and read as its mask token. The text is encoded by the tokenizer itself with
only its special tokens allowed, framed as the model expects: `add_special_tokens=None` keeps the
tokenizer's default (how `fmblocks train --objective mlm` encoded the run's data), True adds [CLS] ... [SEP]
or <cls> ... <eos> (as Hugging Face checkpoints were trained).
A model without a trained masked-LM head (a BertModel directory such as the shipped all-MiniLM-L6-v2,
whose head `from_pretrained` had to initialise) is refused with a CheckpointError saying so.
Limits: each mask is filled independently from the one forward pass (no joint decoding of several masks);
the text must fit in the model's max_len.
"""

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fmblocks.errors import CheckpointError, ConfigError, DataError

PLACEHOLDER = "[MASK]"


@dataclass(frozen=True)
class Candidate:
    """One filler of a mask: its token id, its text and its probability."""

    id: int
    text: str
    probability: float


@dataclass(frozen=True)
class MaskFill:
    """The top candidates for the mask at token `position` of the encoded text."""

    position: int
    candidates: list[Candidate]


def mask_token(tokenizer: Any) -> tuple[str, int]:
    """(string, id) of the tokenizer's mask token, or ConfigError listing its special tokens."""
    for name, index in tokenizer.special_tokens.items():
        if "mask" in name.lower():
            return name, index
    raise ConfigError(f"the {tokenizer.kind} tokenizer has no mask token (its special tokens: "
                      f"{', '.join(tokenizer.special_tokens) or 'none'}), so masks cannot be written")


def check_masked_lm(model: nn.Module) -> None:
    """CheckpointError unless `model` is an encoder whose masked-LM head was loaded (not freshly made)."""
    arch = model.config.arch
    if arch != "encoder":
        raise ConfigError(f"filling masks needs an encoder with a masked-LM head; this model is a {arch}")
    if any(name.startswith("mlm_head.") for name in getattr(model, "hub_fresh", ())):
        classes = (getattr(model, "hub_config", None) or {}).get("architectures") or [model.hub_arch]
        raise CheckpointError(f"this checkpoint ({', '.join(classes)}) has no masked-LM head, so it cannot fill "
                              "masks; use a BertForMaskedLM or EsmForMaskedLM directory, or an fmblocks run trained "
                              "with --objective mlm")


def encode_masked(tokenizer: Any, text: str, *, add_special_tokens: bool | None = None) -> list[int]:
    """The ids of `text` with its mask tokens (see the module docstring), framed as asked."""
    name, _ = mask_token(tokenizer)
    if name != PLACEHOLDER:
        text = text.replace(PLACEHOLDER, name)
    parameters = inspect.signature(tokenizer.encode).parameters
    options: dict[str, Any] = {}
    if "allowed_special" in parameters:
        options["allowed_special"] = set(tokenizer.special_tokens)
    elif "allow_special" in parameters:
        options["allow_special"] = True
    else:
        raise ConfigError(f"the {tokenizer.kind} tokenizer reads no special tokens in text, so masks cannot be written")
    if add_special_tokens is not None and "add_special_tokens" in parameters:
        options["add_special_tokens"] = add_special_tokens
    return list(tokenizer.encode(text, **options))


def token_text(tokenizer: Any, index: int) -> str:
    """How a candidate id reads: its decoded text, else its special token's name, else "<id N>"."""
    if index < tokenizer.vocab_size:
        text = tokenizer.decode([index])
        if text.strip():
            return text.strip()
    names = {i: name for name, i in tokenizer.special_tokens.items()}
    return names.get(index, f"<id {index}>")


@torch.no_grad()
def fill_mask(model: nn.Module, tokenizer: Any, text: str, *, top_k: int = 5,
              add_special_tokens: bool | None = None) -> list[MaskFill]:
    """The `top_k` most likely fillers of every mask in `text`, most likely first."""
    if not (isinstance(top_k, int) and top_k >= 1):
        raise ConfigError(f"top_k must be an integer >= 1, got {top_k!r}")
    check_masked_lm(model)
    name, mask_id = mask_token(tokenizer)
    ids = encode_masked(tokenizer, text, add_special_tokens=add_special_tokens)
    positions = [i for i, token in enumerate(ids) if token == mask_id]
    if not positions:
        raise DataError(f"the text has no mask token; write {name} where a token is missing")
    if len(ids) > model.config.max_len:
        raise DataError(f"the text is {len(ids)} tokens, longer than the model's context of {model.config.max_len}")
    was_training = model.training
    model.eval()
    try:
        logits = model(torch.tensor([ids], device=next(model.parameters()).device)).logits[0]  # (T, V)
    finally:
        model.train(was_training)
    probs = logits[positions].float().softmax(-1)  # (masks, V)
    best = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [MaskFill(position, [Candidate(int(i), token_text(tokenizer, int(i)), float(p))
                                for p, i in zip(values.tolist(), indices.tolist())])
            for position, values, indices in zip(positions, best.values, best.indices)]
