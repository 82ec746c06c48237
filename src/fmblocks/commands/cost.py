"""`fmblocks cost`: parameters and forward FLOPs per component, by formula next to measurement.

    fmblocks cost --d-model 768 --heads 12 --seq-len 1024 [--d-ff 3072] [--ffn swiglu] [--kv-heads 4]
    fmblocks cost --preset gpt2-style [--seq-len 256]          a whole model (T defaults to max_len)
    fmblocks cost --config model.json [--heads 16 ...]          the block flags override the config

Measuring runs one forward pass on the CPU (seconds for a GPT-2-sized model at T = 1024);
--formula-only skips it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from fmblocks.errors import ConfigError

if TYPE_CHECKING:  # imported where used, so that --help does not load torch
    from fmblocks.cost import BlockSpec
    from fmblocks.models import ModelConfig

# block flag -> ModelConfig field it overrides in --preset / --config mode
OVERRIDES = {"d_model": "d_model", "heads": "n_heads", "kv_heads": "n_kv_heads", "d_ff": "d_ff", "ffn": "ffn",
             "norm": "norm"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cost", help="parameters and FLOPs per component (formula vs measured)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--preset", help="a model preset, e.g. gpt2-style, llama-style, bert-style, vit-tiny")
    model.add_argument("--config", type=Path, help="a model config JSON file (ModelConfig.save)")
    parser.add_argument("--d-model", type=int, help="model width d")
    parser.add_argument("--heads", type=int, help="attention heads h")
    parser.add_argument("--kv-heads", type=int, help="key/value heads g (grouped-query attention; default h)")
    parser.add_argument("--d-ff", type=int, help="feed-forward width f (default 4·d)")
    parser.add_argument("--ffn", help="feed-forward kind: mlp, swiglu or geglu (default mlp)")
    parser.add_argument("--norm", help="norm kind: layer or rms (default layer)")
    parser.add_argument("--no-bias", action="store_true", help="linear layers without biases")
    parser.add_argument("--cross-attention", action="store_true", help="one block with cross-attention")
    parser.add_argument("--d-context", type=int, help="context width for cross-attention (default d)")
    parser.add_argument("--seq-len", type=int, help="sequence length T (a model: default max_len)")
    parser.add_argument("--context-len", type=int, help="context length S (cross-attention, encoder-decoder source)")
    parser.add_argument("--batch", type=int, default=1, help="batch size B (default 1)")
    parser.add_argument("--formula-only", action="store_true", help="skip the measurement")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmblocks.cost import block_table, model_table, render

    measured = not args.formula_only
    if args.preset or args.config:
        table = model_table(_model_config(args), args.seq_len, batch=args.batch, context_len=args.context_len,
                            measured=measured)
    else:
        table = block_table(_block_spec(args), args.seq_len, batch=args.batch, context_len=args.context_len,
                            measured=measured)
    print(render(table))
    return 0


def _block_spec(args: argparse.Namespace) -> BlockSpec:
    from fmblocks.cost import BlockSpec

    missing = [flag for flag, value in (("--d-model", args.d_model), ("--heads", args.heads),
                                        ("--seq-len", args.seq_len)) if value is None]
    if missing:
        raise ConfigError(f"one block needs {', '.join(missing)} (or give --preset / --config for a model)")
    d_ff = 4 * args.d_model if args.d_ff is None else args.d_ff
    return BlockSpec(args.d_model, args.heads, d_ff, n_kv_heads=args.kv_heads, ffn=args.ffn or "mlp",
                     norm=args.norm or "layer", bias=not args.no_bias, cross_attention=args.cross_attention,
                     d_context=args.d_context)


def _model_config(args: argparse.Namespace) -> ModelConfig:
    from fmblocks.models import ModelConfig, preset

    if args.cross_attention or args.d_context is not None:
        raise ConfigError("--cross-attention and --d-context describe one block; a model's config decides them")
    overrides = {field: getattr(args, flag) for flag, field in OVERRIDES.items() if getattr(args, flag) is not None}
    if args.no_bias:
        overrides["bias"] = False
    if args.preset:
        return preset(args.preset, **overrides)
    if not args.config.is_file():
        raise ConfigError(f"--config {args.config}: no such file (expected a ModelConfig JSON file)")
    return ModelConfig.load(args.config).replace(**overrides)
