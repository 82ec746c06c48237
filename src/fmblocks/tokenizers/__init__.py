"""1 · Tokenization: raw input -> token ids -> raw input, for text, images and biology.

`load(name_or_path)` returns a pretrained tokenizer or a saved one; importing this package
registers every tokenizer kind.
"""

import importlib

from fmblocks.tokenizers.base import PRETRAINED, TOKENIZERS, Tokenizer, load

# Every module that registers a tokenizer kind or a pretrained name.
_MODULES = ["simple", "bpe", "wordpiece", "image", "vq", "bio"]
for _name in _MODULES:
    importlib.import_module(f"fmblocks.tokenizers.{_name}")

__all__ = ["PRETRAINED", "TOKENIZERS", "Tokenizer", "load"]
