"""Where a model comes from: a Hugging Face model directory or an fmblocks run, opened as (model, tokenizer).

    model, tokenizer = open_model("path/to/hf-dir")          config.json (with "model_type") + safetensors
    model, tokenizer = open_model("runs/tiny", arch="decoder") a run written by `fmblocks train`

`source_kind(path)` tells the two apart: a directory whose config.json is a Hugging Face config (it names a
`model_type`) is "hf"; anything else is read as a run (or its checkpoint/ directory).

The tokenizer of an HF directory is `fmblocks.tokenizers.load(directory)` (tokenizer.json, or a BERT
vocab.txt); an ESM-2 directory, whose vocab.txt is ESM's 33-token alphabet, gets the protein tokenizer
(the same ids in the same order). A run's tokenizer is the tokenizer.json saved beside its checkpoint.
`tokenizer=` overrides either (a pretrained name or a file); `need_tokenizer=False` gives None instead of
an error when a directory has no tokenizer fmblocks can read (a ViT's image processor, say).
Limits: local directories only; the tokenizer of an HF directory must be one tokenizers/hf.py reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmblocks.errors import CheckpointError, ConfigError, FmblocksError

if TYPE_CHECKING:
    from torch import nn


def source_kind(path: str | os.PathLike) -> str:
    """'hf' for a Hugging Face model directory, 'run' for anything else (an fmblocks run or checkpoint)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return "run"
    try:
        document = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "run"  # the run reader names the broken file
    return "hf" if isinstance(document, dict) and "model_type" in document and "format" not in document else "run"


def trained_framed(path: str | os.PathLike) -> bool | None:
    """True when the model at `path` was trained on framed text ([CLS] ... [SEP], <cls> ... <eos>): a Hugging
    Face directory, or a run `convert` made from one; None for a run of `fmblocks train`, whose data was
    encoded by its tokenizer's default (so that default is how to encode text for it)."""
    if source_kind(path) == "hf":
        return True
    from fmblocks.training.checkpoint import find_checkpoint, read_state

    found = find_checkpoint(path)
    return True if found is not None and "hf_config" in read_state(found) else None


def open_model(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    tokenizer: str | os.PathLike | None = None,
    need_tokenizer: bool = True,
) -> tuple[nn.Module, Any]:
    """(model in eval mode, tokenizer) of an HF directory or an fmblocks run.

    `arch` ("decoder", "encoder", ...) refuses a model of another kind, naming both.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: not a model directory (expected a Hugging Face model directory or an "
                              "fmblocks run)")
    if source_kind(path) == "run":
        if not need_tokenizer and tokenizer is None:
            return _open_run_without_tokenizer(path, arch)
        from fmblocks.training.runs import load_run

        model, _, loaded = load_run(path, tokenizer=tokenizer, arch=arch)
        return model, loaded
    from fmblocks.models.hub import from_pretrained

    model = from_pretrained(path)
    if arch is not None and model.config.arch != arch:
        classes = ", ".join(model.hub_config.get("architectures") or [model.hub_arch])
        raise ConfigError(f"{path}: {_a(arch)} model is needed, this one is {_a(model.config.arch)} ({classes})")
    try:
        loaded = hf_tokenizer(path, model, tokenizer)
    except (FmblocksError, FileNotFoundError):
        if need_tokenizer or tokenizer is not None:
            raise
        loaded = None
    return model, loaded


def _open_run_without_tokenizer(path: Path, arch: str | None) -> tuple[nn.Module, Any]:
    from fmblocks.training.checkpoint import load_checkpoint, resolve_checkpoint
    from fmblocks.training.runs import load_run

    directory = resolve_checkpoint(path)
    if any((d / "tokenizer.json").is_file() for d in (directory, directory.parent)):
        model, _, loaded = load_run(path, arch=arch)
        return model, loaded
    model, config, _ = load_checkpoint(directory)
    if arch is not None and config.arch != arch:
        raise ConfigError(f"{directory}: {_a(arch)} checkpoint is needed, this one is {_a(config.arch)}")
    return model, None


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def hf_tokenizer(path: Path, model: nn.Module, override: str | os.PathLike | None = None) -> Any:
    """The tokenizer of an HF model directory (see the module docstring), checked against the model."""
    from fmblocks.tokenizers import load

    if override is not None:
        tokenizer = load(override)
    elif getattr(model, "hub_arch", None) == "esm" and _is_esm_alphabet(path / "vocab.txt"):
        from fmblocks.tokenizers.bio_protein import ProteinTokenizer

        tokenizer = ProteinTokenizer()
    else:
        tokenizer = load(path)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise CheckpointError(f"{path}: the tokenizer has {tokenizer.vocab_size} ids but the model only "
                              f"{model.config.vocab_size}")
    return tokenizer


def _is_esm_alphabet(file: Path) -> bool:
    from fmblocks.tokenizers.bio_protein import VOCAB

    if not file.is_file():
        return False
    return tuple(line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()) == VOCAB
