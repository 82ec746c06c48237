"""A run directory, as `fmblocks train` writes it: the checkpoint plus the tokenizer beside it.

    RUN/tokenizer.json      the tokenizer the model was trained with
    RUN/checkpoint/         config.json, model.safetensors, optimizer.safetensors, trainer_state.json
    RUN/log.csv, loss.png   the training log

`load_run(RUN)` gives back (model, config, tokenizer), checking that they fit together.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fmblocks.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # `fmblocks train --help` reads TOKENIZER_FILE without loading torch
    from torch import nn

    from fmblocks.tokenizers.base import Tokenizer

TOKENIZER_FILE = "tokenizer.json"


def load_run(
    path: str | os.PathLike, *, tokenizer: str | os.PathLike | None = None, arch: str | None = None
) -> tuple[nn.Module, Any, Tokenizer]:
    """(model, model_config, tokenizer) of a run directory (or its checkpoint/ directory).

    `tokenizer` overrides the saved one (a pretrained name or a file); `arch` refuses checkpoints of
    another architecture (e.g. "decoder" for sampling).
    """
    from fmblocks.tokenizers import load
    from fmblocks.training.checkpoint import load_checkpoint, resolve_checkpoint

    directory = resolve_checkpoint(path)
    model, config, _ = load_checkpoint(directory)
    if arch is not None and config.arch != arch:
        raise ConfigError(f"{directory}: a {arch} checkpoint is needed, this one is an {config.arch}")
    if tokenizer is None:
        saved = [p for p in (directory / TOKENIZER_FILE, directory.parent / TOKENIZER_FILE) if p.is_file()]
        if not saved:
            raise CheckpointError(f"{directory}: no {TOKENIZER_FILE} beside the checkpoint, so its token ids cannot be "
                                  "read as text (a run written by `fmblocks train` has one)")
        tokenizer = saved[0]
    loaded = load(tokenizer)
    if loaded.vocab_size != config.vocab_size:
        raise CheckpointError(f"the tokenizer has {loaded.vocab_size} ids but the model {config.vocab_size}")
    return model, config, loaded
