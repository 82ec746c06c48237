"""The explainer's built-in model: a character-level GPT-style decoder trained on Python's own docs.

Characters make attention easy to read (each token is one visible character), and the pydoc topic
texts that every Python installation ships are English prose about Python, so no download is needed.
The first `fmblocks explain` trains it (a few minutes on 2 CPU cores, with a progress bar) into
runs/explainer/, an ordinary run directory; later starts load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `fmblocks explain --help` reads DEFAULT_RUN without loading torch
    from torch import nn

    from fmblocks.tokenizers.base import Tokenizer

DEFAULT_RUN = Path("runs/explainer")
DEFAULT_TEXT = "The for statement is used to iterate over the elements of a sequence"
CONTEXT = 128


def pydoc_topics() -> list[str]:
    """The pydoc topic texts, in sorted topic order."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def train_default(out_dir: Path = DEFAULT_RUN, *, steps: int = 400, progress: bool = True) -> Path:
    """Train the built-in model into `out_dir` (tokenizer.json + checkpoint/); returns `out_dir`."""
    from fmblocks.models import build_model, preset
    from fmblocks.tokenizers.simple import train_char
    from fmblocks.training import TrainConfig, Trainer
    from fmblocks.training.corpus import causal_lm_data
    from fmblocks.training.runs import TOKENIZER_FILE

    documents = pydoc_topics()
    tokenizer = train_char(documents, unk_token="<unk>")
    train, held_out = causal_lm_data(documents, tokenizer, context=CONTEXT, eval_fraction=0.02)
    config = preset("gpt2-style", vocab_size=tokenizer.vocab_size, d_model=128, n_layers=4, n_heads=4, d_ff=512,
                    max_len=CONTEXT)
    tokenizer.save(Path(out_dir) / TOKENIZER_FILE)
    train_config = TrainConfig(steps=steps, batch_size=16, lr=2e-3, warmup_steps=40, eval_every=0, eval_batches=4,
                               progress=progress)
    Trainer(build_model(config), train, config=train_config, eval_data=held_out, model_config=config,
            out_dir=out_dir).fit()
    return Path(out_dir)


def default_run(out_dir: Path = DEFAULT_RUN, *, steps: int = 400) -> tuple[nn.Module, Any, Tokenizer]:
    """(model, config, tokenizer) of the built-in model, training it first if `out_dir` has none."""
    from fmblocks.training.checkpoint import find_checkpoint
    from fmblocks.training.runs import load_run

    if find_checkpoint(out_dir) is None:
        print(f"training the explainer's built-in model into {out_dir} (once; {steps} steps)")
        train_default(out_dir, steps=steps)
    return load_run(out_dir, arch="decoder")
