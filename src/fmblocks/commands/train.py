"""`fmblocks train`: train a model from a preset or config on local text or FASTA files.

    fmblocks train --preset llama-tiny --data corpus/ --tokenizer char --out runs/tiny --steps 300 --lr 3e-3
    fmblocks train --preset gpt2-style --set n_layers=2 d_model=128 --data corpus/ --tokenizer gpt2 \\
        --objective clm --out runs/small --steps 200
    fmblocks train --preset bert-style --set n_layers=2 --data proteins.fasta --objective mlm --out runs/esm
    torchrun --nproc_per_node 2 -m fmblocks.cli train ...      # same command, 2 processes (DDP)
    torchrun --nproc_per_node 2 -m fmblocks.cli train ... --strategy fsdp   # weights sharded over the 2
    fmblocks train --out runs/tiny --data corpus/ --steps 400 --resume   # continue a run
    fmblocks train --preset gpt2-style --data data/corpus --out runs/big   # a directory from `fmblocks prepare`
    fmblocks train --preset gpt2-style --data nanogpt/ --data-dtype uint16 --out runs/nano   # train.bin, val.bin

--data names text or FASTA files (tokenized at start, held in memory: fine for a few MB), a directory
that `fmblocks prepare` wrote (windows streamed from its memory-mapped shards, its tokenizer by
default, its held-out documents for evaluation; another --tokenizer is refused by fingerprint), or with
--data-dtype flat token files (a directory with train.bin and val.bin, or files whose last
--eval-fraction is held out; --tokenizer says whose ids they are, default gpt2).

The model's vocab_size is the tokenizer's. --tokenizer takes a pretrained name (gpt2, ...), a saved
tokenizer file, a tokenizer kind that has defaults (protein, dna-kmer = 6-mers, nucleotide = single
bases), or char (one token per character of the data: a vocabulary of ~100, so a small model learns in
minutes on a CPU). FASTA files (.fa, .fasta, ...) default to protein for --objective mlm and dna-kmer
for clm (nucleotide for the hyena-dna preset, which is made for single bases); text to gpt2. OUT
receives tokenizer.json, run.json, checkpoint/, log.csv and loss.png; `fmblocks sample --checkpoint OUT` reads
them back. Every TrainConfig field is a flag (--batch-size, --lr, --warmup-steps, ...); a run
checkpoints every 100 steps unless --checkpoint-every says otherwise (0: only at the end). OUT is
locked while training: a second `fmblocks train` into it is refused, naming the first one's PID.

--resume continues the run exactly: the flags not given keep the run's saved values (its TrainConfig
in the checkpoint, and --objective, --context, --eval-fraction, --truncate in OUT/run.json), and a
given flag that would change how the run trains is refused; only --steps (a longer or shorter run,
whose schedule then ends at the new step count) and the flags about logging, evaluation, checkpoints,
device, progress, --compile, --peak-flops, --activation-checkpointing and --strategy may change; so may
the number of processes (a run saved by 2 FSDP processes resumes in 1, and the other way round).
Ctrl-C (or SIGTERM) stops at the next step with a checkpoint.

Speed: --precision bf16 (autocast; CPU and CUDA) or fp16 (CUDA only), --compile (torch.compile, eager
where the compiler is unavailable). The run starts by printing its parameters, tokens and FLOPs per
step, device, precision and strategy; the progress bar shows tokens/s, an MFU estimate (against
--peak-flops, or a default per device: see fmblocks.training.summary), the ETA and the latest eval loss.
"""

import argparse
import dataclasses
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from fmblocks.errors import CheckpointError, ConfigError, CorruptFileError, TrainingInterrupted
from fmblocks.training.config import PRECISIONS, STRATEGIES, TrainConfig
from fmblocks.training.runs import TOKENIZER_FILE

ARCH_OF = {"clm": "decoder", "mlm": "encoder"}
FASTA_TOKENIZERS = {"mlm": "protein", "clm": "dna-kmer"}
PRESET_FASTA_TOKENIZERS = {"hyena-dna": "nucleotide"}  # presets made for one tokenization of FASTA
RUN_FILE, RUN_FORMAT = "run.json", "fmblocks-train-run"
# how the data is read into examples: saved in OUT/run.json, restored by --resume
DATA_DEFAULTS: dict[str, Any] = {"objective": "clm", "context": None, "eval_fraction": 0.1, "truncate": False,
                                  "data_dtype": None}
LATER_DATA = {"data_dtype": None}  # data options added since run.json began: an older run has their default
# TrainConfig defaults this command changes: periodic checkpoints, so that an interrupted run can resume
CLI_DEFAULTS: dict[str, Any] = {"checkpoint_every": 100}
TRAIN_FIELDS = [field.name for field in dataclasses.fields(TrainConfig)]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model on local text or FASTA files", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--config", type=Path, help="model config JSON (ModelConfig fields, or a saved config.json)")
    model.add_argument("--preset", help="model preset name (gpt2-style, llama-style, bert-style, ...)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override model config fields; VALUE is JSON (2, 0.1, true, \"rms\") or a bare string")
    parser.add_argument("--data", nargs="+", required=True, type=Path,
                        help="text/FASTA files or directories, a directory from `fmblocks prepare`, or flat token "
                             "files (a directory with train.bin and val.bin) with --data-dtype")
    parser.add_argument("--tokenizer", help="pretrained name or saved tokenizer file (default: see above)")
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoint")
    # the flags below are absent from the parsed arguments unless given (default=SUPPRESS), so that
    # --resume can tell a flag the user repeated from one left at its default
    keep = argparse.SUPPRESS
    parser.add_argument("--objective", choices=list(ARCH_OF), default=keep,
                        help="clm: next-token prediction (decoder); mlm: masked-LM (encoder) (default clm)")
    parser.add_argument("--context", type=int, default=keep, help="clm window length (default: the model's max_len)")
    parser.add_argument("--eval-fraction", type=float, default=keep, help="share of the data held out (default 0.1)")
    parser.add_argument("--truncate", action="store_true", default=keep, help="mlm: cut sequences longer than max_len")
    parser.add_argument("--data-dtype", choices=["uint16", "uint32"], default=keep,
                        help="--data is flat token files of this dtype (nanoGPT's train.bin/val.bin: uint16)")
    defaults = {**TrainConfig().to_dict(), **CLI_DEFAULTS}
    for name in TRAIN_FIELDS:
        flag, default = "--" + name.replace("_", "-"), defaults[name]
        shown = f"(default {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=keep, help=shown)
        elif name == "precision":
            parser.add_argument(flag, choices=PRECISIONS, default=keep,
                                help=f"{shown}; bf16 autocast works on CPU and CUDA, fp16 (gradient scaling) on CUDA only")
        elif name == "strategy":
            parser.add_argument(flag, choices=STRATEGIES, default=keep,
                                help=f"{shown}; under torchrun: ddp copies the model to every process, fsdp shards "
                                     "weights, gradients and optimizer state over them (one unit per block)")
        elif isinstance(default, list):
            parser.add_argument(flag, type=float, nargs=len(default), default=keep, help=shown)
        else:
            parser.add_argument(flag, type=type(default), default=keep, help=shown)
    parser.set_defaults(func=run)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """["n_layers=2", "norm=rms"] -> {"n_layers": 2, "norm": "rms"} (values parsed as JSON when they are)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def tokenizer_from(name: str, documents: list[str] | None = None) -> Any:
    """A pretrained tokenizer, a saved tokenizer file, a tokenizer kind built with its defaults, or "char": one id
    per character of `documents` (sorted)."""
    from fmblocks.tokenizers import PRETRAINED, TOKENIZERS, load

    if name == "char" and documents is not None and not Path(name).exists():
        return TOKENIZERS.get("char")(sorted(set().union(*map(set, documents))))
    if name in PRETRAINED or Path(name).exists() or name not in TOKENIZERS:
        return load(name)
    try:
        return TOKENIZERS.get(name)()
    except TypeError:
        raise ConfigError(f"tokenizer kind {name!r} has no defaults; save one to a file and pass its path") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The JSON object in a --config file; ConfigError for an unreadable, empty or non-object file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file (expected a JSON object of ModelConfig fields)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--config {path}: not a JSON file ({err})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of ModelConfig fields, "
                          f"found {type(document).__name__}")
    return document


def model_config_from(args: argparse.Namespace, vocab_size: int, objective: str) -> Any:
    """The ModelConfig the flags ask for, with the tokenizer's vocab_size."""
    from fmblocks.models import ModelConfig, preset

    if args.preset:
        base = preset(args.preset)
    else:
        document = read_config_file(args.config)
        base = ModelConfig.load(args.config) if "format" in document else ModelConfig.from_dict(document)
    config = base.replace(**{**parse_overrides(args.set), "vocab_size": vocab_size})
    if config.arch != ARCH_OF[objective]:
        raise ConfigError(f"--objective {objective} trains a {ARCH_OF[objective]}, "
                          f"but the config's arch is {config.arch!r}")
    return config


def settings(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """(TrainConfig, data options) of the run: the flags given over the defaults or, with --resume, over the
    run's saved values; a given flag that would change how a resumed run trains is a ConfigError."""
    from fmblocks.files import read_json
    from fmblocks.models import ModelConfig
    from fmblocks.training.checkpoint import CONFIG_FILE, STATE_FILE, read_state, resolve_checkpoint
    from fmblocks.training.state import RESUMABLE_FIELDS, checked_state

    flags = {name: getattr(args, name) for name in TRAIN_FIELDS if hasattr(args, name)}
    data = {name: getattr(args, name) for name in DATA_DEFAULTS if hasattr(args, name)}
    if not args.resume:
        return TrainConfig(**{**CLI_DEFAULTS, **flags}), {**DATA_DEFAULTS, **data}
    directory = resolve_checkpoint(args.out)
    saved_config = checked_state(read_state(directory), directory / STATE_FILE)["train_config"].to_dict()
    if (args.out / RUN_FILE).is_file():
        saved_data = read_json(args.out / RUN_FILE, fmt=RUN_FORMAT)
        missing = [name for name in DATA_DEFAULTS if name not in saved_data and name not in LATER_DATA]
        if missing:
            raise CorruptFileError(f"{args.out / RUN_FILE}: missing {', '.join(missing)}")
        saved_data = {name: {**LATER_DATA, **saved_data}[name] for name in DATA_DEFAULTS}
    else:  # a run from before run.json: its objective follows from the model
        arch = ModelConfig.load(directory / CONFIG_FILE).arch
        saved_data = {**DATA_DEFAULTS, "objective": next(k for k, v in ARCH_OF.items() if v == arch)}
    saved = {**saved_config, **saved_data}
    conflicts = [f"--{name.replace('_', '-')} {value!r} (the run has {saved[name]!r})"
                 for name, value in {**flags, **data}.items() if name not in RESUMABLE_FIELDS and value != saved[name]]
    if conflicts:
        raise ConfigError(f"--resume continues {args.out} as it was trained, but {', '.join(conflicts)}; drop these "
                          "flags, or train a new run into another --out")
    if flags.get("steps", saved["steps"]) != saved["steps"]:
        print(f"fmblocks train: note: --steps {flags['steps']} changes the run's length from {saved['steps']}; its "
              "learning-rate schedule now ends at the new step count", file=sys.stderr)
    return TrainConfig.from_dict({**saved_config, **flags}), {**saved_data, **data}


def run(args: argparse.Namespace) -> int:
    from fmblocks.training.distributed import init_distributed, shutdown
    from fmblocks.training.lock import run_lock

    train_config, data = settings(args)
    if not 0 <= data["eval_fraction"] < 1:
        raise ConfigError(f"--eval-fraction must be in [0, 1), got {data['eval_fraction']}")
    dist = init_distributed(train_config.device)
    try:
        with run_lock(args.out) if dist.is_main else nullcontext():
            history = _train(args, train_config, data, is_main=dist.is_main)
    finally:
        shutdown()
    if dist.is_main and history:
        last = history[-1]
        evaluated = [row["eval_loss"] for row in history if row["eval_loss"] is not None]
        print(f"step {last['step']}: train loss {last['train_loss']:.4f}"
              + (f", eval loss {evaluated[-1]:.4f}" if evaluated else "") + f" -> {args.out}")
    return 0


def _train(args: argparse.Namespace, train_config: TrainConfig, data: dict[str, Any], *, is_main: bool) -> list:
    """Build the data, model and trainer (resuming or starting OUT) and fit; returns the history."""
    import torch

    from fmblocks.files import write_json
    from fmblocks.models import ModelConfig, build_model
    from fmblocks.tokenizers import load
    from fmblocks.training.checkpoint import CHECKPOINT_DIR, CONFIG_FILE, find_checkpoint, resolve_checkpoint
    from fmblocks.data.shards import flat_token_windows
    from fmblocks.training.corpus import causal_lm_data, masked_lm_data, read_documents
    from fmblocks.training.summary import format_summary
    from fmblocks.training.trainer import Trainer

    objective = data["objective"]
    prepared = _prepared(args, data)
    tokens = prepared is not None or data["data_dtype"] is not None  # token files, not text
    if tokens and objective != "clm":
        raise ConfigError("--objective mlm reads text or FASTA files; prepared or flat token data trains --objective clm")
    documents, fasta = read_documents(args.data) if not tokens else (None, False)
    if args.resume:
        directory = resolve_checkpoint(args.out)
        tokenizer = load(args.out / TOKENIZER_FILE)
        if args.tokenizer is not None and tokenizer_from(args.tokenizer, documents).to_dict() != tokenizer.to_dict():
            raise ConfigError(f"--tokenizer {args.tokenizer} is not the tokenizer {args.out} was trained with "
                              f"({args.out / TOKENIZER_FILE}); drop the flag to resume")
        saved = ModelConfig.load(directory / CONFIG_FILE)
        if args.preset or args.config:
            model_config = model_config_from(args, tokenizer.vocab_size, objective)
        else:
            model_config = saved.replace(**parse_overrides(args.set))  # the trainer refuses any difference
    else:
        found = find_checkpoint(args.out)
        if found is not None:
            how = "" if found.name == CHECKPOINT_DIR else f" (only as {found.name}, left by a crash while saving)"
            raise CheckpointError(f"{args.out} already holds a checkpoint{how}; pass --resume to continue it, or "
                                  "remove it (or choose another --out) to start afresh")
        if not (args.preset or args.config):
            raise ConfigError("fmblocks train needs --preset NAME or --config FILE (or --resume)")
        if prepared is not None and args.tokenizer is None:
            tokenizer = load(prepared.directory / TOKENIZER_FILE)
        else:
            default = PRESET_FASTA_TOKENIZERS.get(args.preset, FASTA_TOKENIZERS[objective]) if fasta else "gpt2"
            tokenizer = tokenizer_from(args.tokenizer or default, documents)
        model_config = model_config_from(args, tokenizer.vocab_size, objective)
    if prepared is not None:
        _check_fingerprint(prepared, tokenizer, args)
        train, held_out = prepared.windows(data["context"] or model_config.max_len)
    elif tokens:
        train, held_out = flat_token_windows(args.data, data["data_dtype"], data["context"] or model_config.max_len,
                                             vocab_size=tokenizer.vocab_size, eval_fraction=data["eval_fraction"])
    elif objective == "clm":
        train, held_out = causal_lm_data(documents, tokenizer, context=data["context"] or model_config.max_len,
                                         eval_fraction=data["eval_fraction"])
    else:
        train, held_out = masked_lm_data(documents, tokenizer, max_len=model_config.max_len, per_document=fasta,
                                         eval_fraction=data["eval_fraction"], truncate=data["truncate"],
                                         seed=train_config.seed)
    torch.manual_seed(train_config.seed)
    trainer = Trainer(build_model(model_config), train, config=train_config, eval_data=held_out,
                      model_config=model_config, out_dir=args.out)
    if is_main and trainer.summary() is not None:
        print(format_summary(trainer.summary()), file=sys.stderr)
    if args.resume:
        trainer.resume()
    elif is_main:
        tokenizer.save(args.out / TOKENIZER_FILE)
        write_json(args.out / RUN_FILE, data, fmt=RUN_FORMAT)
    try:
        return trainer.fit()
    except TrainingInterrupted as stop:
        raise TrainingInterrupted(f"{stop}; continue with the same command plus --resume", signal=stop.signal,
                                  step=stop.step, checkpoint=stop.checkpoint) from None


def _prepared(args: argparse.Namespace, data: dict[str, Any]) -> Any:
    """The opened `fmblocks prepare` directory that --data names, or None for files."""
    from fmblocks.data.shards import is_prepared, open_prepared

    if not (len(args.data) == 1 and is_prepared(args.data[0])):
        return None
    if data["data_dtype"] is not None:
        raise ConfigError(f"--data-dtype is for flat token files; {args.data[0]} is a prepared directory, whose "
                          "index names its dtype: drop the flag")
    if hasattr(args, "eval_fraction"):
        raise ConfigError(f"{args.data[0]} is a prepared directory, whose held-out documents `fmblocks prepare "
                          "--eval-fraction` chose: drop --eval-fraction, or prepare again")
    return open_prepared(args.data[0])


def _check_fingerprint(prepared: Any, tokenizer: Any, args: argparse.Namespace) -> None:
    """Refuse to train on shards made by another tokenizer than the run's."""
    from fmblocks.data.shards import fingerprint

    ours = fingerprint(tokenizer)
    if ours != prepared.fingerprint:
        whose = f"the run's tokenizer ({args.out / TOKENIZER_FILE})" if args.resume else f"--tokenizer {args.tokenizer}"
        raise ConfigError(f"{prepared.directory} was tokenized by another tokenizer (fingerprint "
                          f"{prepared.fingerprint[:12]}, {prepared.index['tokenizer']['kind']}) than {whose} "
                          f"(fingerprint {ours[:12]}); train with the data's tokenizer, or prepare the data again "
                          "with this one")
