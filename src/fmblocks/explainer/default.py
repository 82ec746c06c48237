"""The explainer's built-in model: a small character-level GPT-style decoder trained on Python's own docs.

Characters make attention easy to read (each token is one visible character), and the pydoc topic
texts that every Python installation ships are English prose about Python, so no download is needed.
The trained model ships inside the package (`model/`: config.json, model.safetensors in float16,
tokenizer.json; about 1.7 MB), so `fmblocks explain` opens at once. It is made by

    python -m fmblocks.explainer.default --build        # trains for STEPS steps (minutes on 2 CPU cores)

which trains an ordinary run in a temporary directory and writes its weights here.
"""

from __future__ import annotations

import argparse
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `fmblocks explain --help` reads this module without loading torch
    from torch import nn

    from fmblocks.tokenizers.base import Tokenizer

PACKAGED = Path(__file__).resolve().parent / "model"  # where --build writes (a source checkout)
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
DEFAULT_TEXT = "The for statement is used to iterate over the elements of a sequence"
CONTEXT = 128
STEPS = 600


def pydoc_topics() -> list[str]:
    """The pydoc topic texts, in sorted topic order."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def train_default(out_dir: Path, *, steps: int = STEPS, progress: bool = True) -> Path:
    """Train the built-in model into the run directory `out_dir` (tokenizer.json + checkpoint/)."""
    from fmblocks.models import build_model, preset
    from fmblocks.tokenizers.simple import train_char
    from fmblocks.training import TrainConfig, Trainer
    from fmblocks.training.corpus import causal_lm_data
    from fmblocks.training.runs import TOKENIZER_FILE as RUN_TOKENIZER

    documents = pydoc_topics()
    tokenizer = train_char(documents, unk_token="<unk>")
    train, held_out = causal_lm_data(documents, tokenizer, context=CONTEXT, eval_fraction=0.02)
    config = preset("gpt2-style", vocab_size=tokenizer.vocab_size, d_model=128, n_layers=4, n_heads=4, d_ff=512,
                    max_len=CONTEXT)
    tokenizer.save(Path(out_dir) / RUN_TOKENIZER)
    train_config = TrainConfig(steps=steps, batch_size=16, lr=2e-3, warmup_steps=40, eval_every=0, eval_batches=4,
                               progress=progress)
    Trainer(build_model(config), train, config=train_config, eval_data=held_out, model_config=config,
            out_dir=out_dir).fit()
    return Path(out_dir)


def export(model: nn.Module, tokenizer: Tokenizer, out_dir: Path) -> Path:
    """Write `model` (weights in float16, tied weights once) and `tokenizer` as the shipped model in `out_dir`."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    seen, tensors = set(), {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # lm_head.weight is the token embedding (tie_embeddings)
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.detach().to("cpu").half().contiguous()
    save_file(tensors, str(out_dir / WEIGHTS_FILE))
    model.config.save(out_dir / CONFIG_FILE)
    tokenizer.save(out_dir / TOKENIZER_FILE)
    return out_dir


def build(out_dir: Path = PACKAGED, *, steps: int = STEPS) -> Path:
    """Train the built-in model and export it into `out_dir` (the package's model/ by default)."""
    from fmblocks.training.runs import load_run

    with tempfile.TemporaryDirectory() as run:
        train_default(Path(run), steps=steps)
        model, _, tokenizer = load_run(run, arch="decoder")
        return export(model, tokenizer, Path(out_dir))


def load_model_dir(directory: Any) -> tuple[nn.Module, Tokenizer]:
    """(model in eval mode, tokenizer) of an exported model directory (a Path or an importlib Traversable)."""
    import torch
    from safetensors.torch import load

    from fmblocks.errors import CheckpointError

    missing = [n for n in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE) if not (directory / n).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: not a model directory, missing {', '.join(missing)}")
    from fmblocks.models import ModelConfig, build_model
    from fmblocks.tokenizers import load as load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:  # both load from paths; an installed package may be a zip
        for name in (CONFIG_FILE, TOKENIZER_FILE):
            (Path(tmp) / name).write_bytes((directory / name).read_bytes())
        config, tokenizer = ModelConfig.load(Path(tmp) / CONFIG_FILE), load_tokenizer(Path(tmp) / TOKENIZER_FILE)
    model = build_model(config)
    stored = load((directory / WEIGHTS_FILE).read_bytes())
    expected = model.state_dict()
    missing = [n for n in expected if n not in stored and not (n == "lm_head.weight" and config.tie_embeddings)]
    extra = [n for n in stored if n not in expected]
    if missing or extra:
        raise CheckpointError(f"{directory}: weights do not fit the config (missing {missing[:3]}, extra {extra[:3]})")
    with torch.no_grad():
        for name, tensor in stored.items():
            expected[name].copy_(tensor.to(expected[name].dtype))
    return model.eval(), tokenizer


def default_model() -> tuple[nn.Module, Tokenizer]:
    """(model, tokenizer) of the built-in model shipped in the package; no training."""
    return load_model_dir(resources.files("fmblocks.explainer") / "model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmblocks.explainer.default", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="train the built-in model and write it")
    parser.add_argument("--out", type=Path, default=PACKAGED, help=f"where to write it (default {PACKAGED})")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    args = parser.parse_args(argv)
    if not args.build:
        parser.print_help()
        return 0
    print(f"wrote {build(args.out, steps=args.steps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
