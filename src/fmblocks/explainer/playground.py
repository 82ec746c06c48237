"""The tokenizer playground: one text through any fmblocks tokenizer, piece by piece.

    tokenize_text(tokenizers, "gpt2", "Hello world") -> {"tokenizer": "gpt2", "pieces": ["Hello", " world"],
        "ids": [15496, 995], "n_tokens": 2, "n_chars": 11, "n_bytes": 11, "bytes_per_token": 5.5, ...}

PLAYGROUND names the choices: the pretrained text tokenizers (gpt2, cl100k_base, bert-base-uncased),
a character tokenizer over printable ASCII, DNA 3-mers (non-overlapping), the ESM-2 protein alphabet,
and "model" (the loaded model's own). Each is built on first use and kept. Pieces are each id decoded
on its own (special tokens by their name), so a byte-level piece of a multi-byte character shows as U+FFFD. A text the tokenizer
refuses (a letter that is not DNA, say) is a TokenizerError with its own message.
"""

import string
import threading
from collections.abc import Callable
from typing import Any

from fmblocks.errors import ConfigError
from fmblocks.explainer.analysis import encode_allowing_mask
from fmblocks.tokenizers.base import Tokenizer

MAX_PLAYGROUND_CHARS = 20_000  # characters tokenized per request


def _pretrained(name: str) -> Callable[[], Tokenizer]:
    def make() -> Tokenizer:
        from fmblocks.tokenizers import load

        return load(name)
    return make


def _char() -> Tokenizer:
    from fmblocks.tokenizers.simple import train_char

    return train_char([string.printable], unk_token="<unk>")


def _dna() -> Tokenizer:
    from fmblocks.tokenizers.bio_dna import KmerTokenizer

    return KmerTokenizer(3)


def _protein() -> Tokenizer:
    from fmblocks.tokenizers.bio_protein import ProteinTokenizer

    return ProteinTokenizer()


PLAYGROUND: dict[str, Callable[[], Tokenizer]] = {
    "model": lambda: None,  # replaced by the model's own tokenizer in Playground
    "gpt2": _pretrained("gpt2"),
    "cl100k_base": _pretrained("cl100k_base"),
    "bert-base-uncased": _pretrained("bert-base-uncased"),
    "char": _char,
    "dna-3mer": _dna,
    "protein": _protein,
}


class Playground:
    """The PLAYGROUND tokenizers, built lazily (thread-safe), with `own` as "model"."""

    def __init__(self, own: Tokenizer | None) -> None:
        self.built: dict[str, Tokenizer] = {} if own is None else {"model": own}
        self.lock = threading.Lock()

    def get(self, name: Any) -> Tokenizer:
        if not isinstance(name, str) or name not in PLAYGROUND:
            raise ConfigError(f"unknown tokenizer {name!r}; known: {', '.join(PLAYGROUND)}")
        with self.lock:
            if name not in self.built:
                if name == "model":
                    raise ConfigError("this model reads images, it has no tokenizer; pick another")
                self.built[name] = PLAYGROUND[name]()
            return self.built[name]


def tokenize_text(playground: Playground, name: Any, text: str) -> dict[str, Any]:
    """Pieces, ids and counts of `text` under the tokenizer `name` (see the module docstring)."""
    tokenizer = playground.get(name)
    truncated = len(text) > MAX_PLAYGROUND_CHARS
    text = text[:MAX_PLAYGROUND_CHARS]
    ids = [int(i) for i in encode_allowing_mask(tokenizer, text)]  # [MASK] / <mask> as the model reads it
    n_bytes = len(text.encode("utf-8"))
    specials = {int(i): name for name, i in tokenizer.special_tokens.items()}
    return {"tokenizer": name, "kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
            "pieces": [specials.get(i) or tokenizer.decode([i]) for i in ids], "ids": ids, "n_tokens": len(ids), "n_chars": len(text),
            "n_bytes": n_bytes, "bytes_per_token": n_bytes / len(ids) if ids else None,
            "truncated": f"only the first {MAX_PLAYGROUND_CHARS} characters are tokenized" if truncated else None}
