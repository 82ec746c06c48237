"""What the explainer shows, as plain data: any decoder or encoder model plus a text tokenizer -> dicts of lists.

    analyze(model, tok, "def add(a, b):")  ->  {"tokens": [...], "ids": [...], "embeddings_2d": (T, 2),
        "attention": [layer][head] (T, T), "next": [{"token", "id", "p", "p_temperature", "p_sampled",
        "kept"}, ...], "cutoff": {...}, "lens": [layer][T] top-3 predictions, "mlp_norm": [layer] (T,), ...}

Attention is the list of per-layer (B, H, T, T) weights the model returns with
`return_intermediates=True` (batch 0), so any fmblocks decoder works without a fork of the model.
`p` is softmax(logits) of the last position (a decoder's next token) or, for an encoder, of the first
mask token in the text ([MASK] or <mask>, read as the mask even where the tokenizer refuses special
tokens in text; the last token when there is none): "task" and "position" say which; `p_sampled` is the distribution that sampling draws from
after temperature, top-k and top-p (zero for removed candidates), `p_temperature` the distribution after
temperature alone; "cutoff" says how many candidates sampling keeps and the smallest kept probability.
"lens" is the logit lens: each layer's residual stream (the block's output) put through the model's
final norm and output head, top-3 next-token predictions per position (the last layer's equals the
model's logits). "mlp_norm" is the RMS of each token's feed-forward activations per layer. The embedding map projects the
(T, D) input embeddings on their first two principal components (centred SVD).
Long texts: only the end that fits is analysed (`encode_tail`: at most `max_tokens` tokens, default the
model's max_len, from at most CHARS_PER_TOKEN characters per token, so the work is bounded however
long the text), and the result's "truncated" says where the analysed part starts (None when nothing
was cut).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fmblocks.errors import ConfigError, DataError
from fmblocks.generation import (apply_temperature, check_max_new_tokens, check_sampling, filter_logits, generate,
                                 generate_seq2seq, is_integer)
from fmblocks.tokenizers.base import Tokenizer

CHARS_PER_TOKEN = 16  # characters tokenized per token analysed: longer than the tokens of ordinary text


def pca_2d(x: torch.Tensor) -> torch.Tensor:
    """(T, D) -> (T, 2): coordinates on the first two principal axes (zeros where there are fewer)."""
    centred = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # vh (min(T, D), D)
    coords = centred @ vh[:2].T  # (T, <=2)
    return torch.nn.functional.pad(coords, (0, 2 - coords.shape[1]))


MASK_TOKENS = ("[MASK]", "<mask>")  # the fill-mask token of BERT-style and ESM-style tokenizers


def mask_id(tokenizer: Tokenizer) -> int | None:
    """The id of the tokenizer's mask token, or None when it has none."""
    specials = tokenizer.special_tokens
    return next((int(specials[name]) for name in MASK_TOKENS if name in specials), None)


def encode_allowing_mask(tokenizer: Tokenizer, text: str) -> list[int]:
    """tokenizer.encode(text), where a tokenizer with a mask token reads it in the text (fill-mask input)."""
    name = next((n for n in MASK_TOKENS if n in tokenizer.special_tokens), None)
    if name is None or name not in text:
        return tokenizer.encode(text)
    for allow in ({"allowed_special": {name}}, {"allow_special": True}):  # the two spellings fmblocks has
        try:
            return tokenizer.encode(text, **allow)
        except TypeError:
            continue
    return tokenizer.encode(text)


def encode_tail(tokenizer: Tokenizer, text: str, max_tokens: int) -> tuple[list[int], dict[str, Any] | None]:
    """The ids of the end of `text` (at most `max_tokens`) and where they start (None when all of it fits).

    Only the last CHARS_PER_TOKEN * max_tokens characters are tokenized. The truncation note is
    {"start": index in `text` of the first analysed character, or None where the tokenizer cannot say
    (lossy, or the cut falls inside a character's bytes), "message": the same for a reader}.
    DataError for a text that gives no tokens.
    """
    skipped = max(0, len(text) - CHARS_PER_TOKEN * max_tokens)
    ids = encode_allowing_mask(tokenizer, text[skipped:])
    if not ids:
        raise DataError("the text gives no tokens: type at least one character")
    dropped = max(0, len(ids) - max_tokens)
    if not skipped and not dropped:
        return ids, None
    ids, start = ids[dropped:], skipped
    if dropped:
        kept = tokenizer.decode(ids) if tokenizer.lossless else None
        start = len(text) - len(kept) if kept and text.endswith(kept) else None
    where = f"from character {start} of {len(text)}" if start is not None else f"its last {len(ids)} tokens"
    message = f"the text is too long to use whole (at most {max_tokens} tokens here): only its end is used, {where}"
    return ids, {"start": start, "message": message}


def describe_blocks(config: Any, n_layers: int, *, cross: bool) -> list[dict[str, Any]]:
    """Each block's parts, as `architecture` lists them."""
    return [{"index": i, "mixer": mixer, "core": config.attention if mixer == "attention" else None,
             "norm": config.norm, "norm_first": config.norm_first, "ffn": config.ffn,
             "activation": config.activation if config.ffn == "mlp" else None, "d_ff": config.d_ff,
             "n_heads": config.n_heads, "n_kv_heads": config.n_kv_heads or config.n_heads, "cross": cross}
            for i, mixer in enumerate(config.layer_mixers(n_layers))]


def architecture(config: Any) -> dict[str, Any]:
    """The model as the page draws it, from its config: embedding, positions, each block's parts, the head.

    "blocks" are the layers the page selects (an encoder-decoder's decoder blocks, with cross-attention);
    an encoder-decoder's encoder blocks are under "encoder_blocks".
    """
    seq2seq = config.arch == "encoder-decoder"
    return {"arch": config.arch, "d_model": config.d_model, "vocab_size": config.vocab_size,
            "max_len": config.max_len, "positions": config.pos,
            "blocks": describe_blocks(config, config.decoder_layers if seq2seq else config.n_layers, cross=seq2seq),
            "encoder_blocks": describe_blocks(config, config.n_layers, cross=False) if seq2seq else None,
            "final_norm": config.norm if config.norm_first else None, "tied": bool(config.tie_embeddings),
            "token_types": config.type_vocab_size}


def token_strings(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each id decoded on its own (byte-level pieces of a character show as U+FFFD); special tokens, which
    decode to nothing, by their names ([CLS], [MASK], ...)."""
    specials = {int(i): name for name, i in tokenizer.special_tokens.items()}
    return [specials.get(i) or tokenizer.decode([i]) for i in ids]


def decoder_of(tokenizer: Tokenizer) -> Callable[[int], str]:
    """id -> its text, the label of a predicted token."""
    return lambda i: tokenizer.decode([i])


def top_predictions(logits: torch.Tensor, label: Callable[[int], str], n: int = 3) -> list[list[dict[str, Any]]]:
    """(T, V) logits -> per position its n most probable tokens [{"id", "token": label(id), "p"}]."""
    probs = logits.float().softmax(-1)
    values, indices = probs.topk(min(n, probs.shape[-1]), dim=-1)  # (T, n)
    return [[{"id": int(i), "token": label(int(i)), "p": float(v)} for v, i in zip(vs, ids)]
            for vs, ids in zip(values, indices)]


KINDS = ("decoder", "encoder", "encoder-decoder")  # the model kinds the explainer reads as text


def text_stack(model: nn.Module) -> nn.Module:
    """The BlockStack whose tokens the page shows: the decoder's of an encoder-decoder, else the only one."""
    return model.decoder if model.config.arch == "encoder-decoder" else model.stack


def readout(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A residual stream (B, T, D) through the model's final norm and output head (LM, masked-LM or a ViT's
    class head, here applied at every position) -> logits (B, T, V)."""
    head = {"encoder": getattr(model, "mlm_head", None), "vit": getattr(model, "head", None)}.get(
        model.config.arch) or model.lm_head
    return head(text_stack(model).final_norm(h))


def check_kind(model: nn.Module) -> str:
    """The model's arch when the explainer reads it as text (one of KINDS); ConfigError otherwise."""
    arch = model.config.arch
    if arch not in KINDS:
        raise ConfigError(f"the explainer reads decoders (next token), encoders (fill-mask) and encoder-decoders "
                          f"(next token, cross-attention), not {arch} models")
    return arch


def run_model(model: nn.Module, tokenizer: Tokenizer, text: str, source: str | None, max_tokens: int | None
              ) -> tuple[list[int], dict | None, Any, dict[str, Any] | None]:
    """(ids, truncated, model output with intermediates, source part or None) for `text` (and `source`).

    An encoder-decoder reads `source` with its encoder and `text` (the start of the target) with its decoder;
    the source part is {"tokens", "ids", "truncated"}.
    """
    limit = min(max_tokens or model.config.max_len, model.config.max_len)
    ids, truncated = encode_tail(tokenizer, text, limit)
    if model.config.arch != "encoder-decoder":
        return ids, truncated, model(torch.tensor([ids]), return_intermediates=True), None
    if not isinstance(source, str):
        raise ConfigError(f"source must be a string (the encoder's text), got {type(source).__name__}")
    source_ids, source_truncated = encode_tail(tokenizer, source, limit)
    out = model(torch.tensor([source_ids]), torch.tensor([ids]), return_intermediates=True)
    return ids, truncated, out, {"tokens": token_strings(tokenizer, source_ids), "ids": source_ids,
                                 "truncated": source_truncated}


def predicted_position(model: nn.Module, tokenizer: Tokenizer, ids: list[int]) -> int:
    """Where the prediction is read: the last token (decoder), else the first mask token (else the last)."""
    wanted = mask_id(tokenizer) if model.config.arch == "encoder" else None
    return ids.index(wanted) if wanted in ids else len(ids) - 1


def logit_lens(model: nn.Module, hidden: list[torch.Tensor], label: Callable[[int], str]) -> list[list[list[dict]]]:
    """Each layer's residual stream (B, T, D) read out through the final norm and the head: [layer][T][top 3]."""
    return [top_predictions(readout(model, h)[0], label) for h in hidden]


def next_token(logits: torch.Tensor, label: Callable[[int], str], *, temperature: float, top_k: int | None,
               top_p: float | None, n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The n most probable next tokens under three distributions, and where sampling cuts the candidates."""
    probs = logits.float().softmax(-1)
    tempered = apply_temperature(logits, temperature).float().softmax(-1)
    sampled = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p).float().softmax(-1)
    kept = sampled > 0
    best = probs.topk(min(n, probs.numel())).indices
    items = [{"id": int(i), "token": label(int(i)), "p": float(probs[i]),
              "p_temperature": float(tempered[i]), "p_sampled": float(sampled[i]), "kept": bool(kept[i])}
             for i in best]
    cutoff = {"kept": int(kept.sum()), "vocab_size": int(probs.numel()), "temperature": temperature,
              "top_k": top_k, "top_p": top_p, "min_kept_p_temperature": float(tempered[kept].min())}
    return items, cutoff


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
    max_tokens: int | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Tokens, embedding map, attention per layer and head, next-token probabilities and truncation for `text`.

    At most `max_tokens` tokens (default: the model's max_len) of the end of `text` are analysed. An
    encoder-decoder also reads `source` (its encoder's text): then "source" holds its tokens,
    "cross_attention" the decoder's weights on it [L][H][T][S] and "encoder_attention" [L][H][S][S].
    """
    check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    arch = check_kind(model)
    model.eval()
    ids, truncated, out, source_part = run_model(model, tokenizer, text, source, max_tokens)
    seen = out.intermediates
    position = predicted_position(model, tokenizer, ids)
    logits = out.logits[0, position]  # (V,)
    items, cutoff = next_token(logits, decoder_of(tokenizer), temperature=temperature, top_k=top_k, top_p=top_p, n=n_next)
    extra = {} if source_part is None else {
        "source": source_part,
        "cross_attention": [layer[0].tolist() for layer in seen["cross_attention"]],  # [L][H][T][S]
        "encoder_attention": [layer[0].tolist() for layer in seen["encoder"]["attention"]],  # [L][H][S][S]
    }
    return {
        **extra,
        "tokens": token_strings(tokenizer, ids),
        "ids": ids,
        "embeddings_2d": pca_2d(seen["embeddings"][0]).tolist(),
        "attention": [layer[0].tolist() for layer in seen["attention"]],  # [L][H][T][T]
        "next": items,
        "cutoff": cutoff,
        "lens": logit_lens(model, seen["hidden"], decoder_of(tokenizer)),
        "mlp_norm": [a[0].float().pow(2).mean(-1).sqrt().tolist() for a in seen["mlp"]],  # [L][T]
        "task": "fill-mask" if arch == "encoder" else "next token",
        "position": position,  # the token whose prediction "next" is (decoder: the last; encoder: the mask)
        "n_layers": len(seen["attention"]),
        "n_heads": int(seen["attention"][0].shape[1]),
        "truncated": truncated,
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
    source: str | None = None,
) -> dict[str, Any]:
    """A sampled continuation of `text` (seeded): the new text, its tokens, and where the prompt was cut.

    The prompt is the end of `text` that leaves room for `max_new_tokens` in the model's context. An
    encoder-decoder reads `source` with its encoder and continues `text`, the start of the target
    (`generate_seq2seq` from that prefix); encoders have no continuation to sample.
    """
    check_sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    arch = check_kind(model)
    if arch == "encoder":
        raise ConfigError("sampling a continuation needs a decoder or an encoder-decoder; an encoder fills masks "
                          "instead (its prediction is in the probabilities)")
    if not 1 <= check_max_new_tokens(max_new_tokens) < model.config.max_len:
        raise ConfigError(f"max_new_tokens must lie in 1..{model.config.max_len - 1}, got {max_new_tokens}")
    if not (is_integer(seed) and 0 <= seed < 2**63):
        raise ConfigError(f"seed must be an integer in 0..2**63 - 1, got {seed!r}")
    if arch == "encoder-decoder" and not isinstance(source, str):
        raise ConfigError(f"source must be a string (the encoder's text), got {type(source).__name__}")
    ids, truncated = encode_tail(tokenizer, text, model.config.max_len - max_new_tokens)
    generator = torch.Generator().manual_seed(seed)
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    if arch == "encoder-decoder":
        source_ids, _ = encode_tail(tokenizer, source, model.config.max_len)
        out = generate_seq2seq(model, torch.tensor([source_ids]), torch.tensor([ids]), max_new_tokens, **options)
    else:
        out = generate(model, torch.tensor([ids]), max_new_tokens, **options)
    tokens = out[0, len(ids):].tolist()
    return {"continuation": tokenizer.decode(tokens), "tokens": token_strings(tokenizer, tokens), "ids": tokens,
            "truncated": truncated}
