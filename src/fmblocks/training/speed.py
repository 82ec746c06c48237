"""Mixed precision and torch.compile for the Trainer: the two switches that make a step cheaper.

Precision (`TrainConfig.precision`):

    fp32   every operation in float32 (the default, and the reference the others are compared with)
    bf16   torch.autocast to bfloat16: matrix products run in bf16, reductions, norms and the loss stay in
           float32; the weights, gradients and optimizer state stay float32. bf16 has float32's exponent
           range, so no loss scaling is needed. Works on CUDA and on the CPU (fast where the CPU has
           bf16 instructions: AVX512-BF16 or AMX).
    fp16   torch.autocast to float16 with a GradScaler: the loss is multiplied by a scale before backward
           so that small gradients do not flush to zero, the gradients are unscaled before clipping, and a
           step with infinite gradients is skipped and the scale halved. CUDA only (refused elsewhere).

Compile (`TrainConfig.compile`): `torch.compile` wraps the network used for the training forward;
weights, checkpoints and evaluation use the plain module, so a compiled run's checkpoint is an ordinary
one. Compilation happens on the first step; where the compiler is unavailable or fails (no C++ compiler,
an unsupported Python, a graph it cannot handle) the run prints one line and continues in eager mode.

Activation checkpointing (`TrainConfig.activation_checkpointing`): each TransformerBlock keeps only its
input during the forward pass and recomputes its activations during backward (torch.utils.checkpoint,
non-reentrant, RNG state preserved so dropout draws the same mask): activation memory drops from
O(layers x activations of a block) to O(layers x block input + one block), for about one extra forward.
The gradients are the same; the module tree and so the checkpoints' weight names do not change.
"""

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from fmblocks.errors import ConfigError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """ConfigError for fp16 anywhere but CUDA (autocast to float16 without a GradScaler loses small gradients)."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA device (it relies on a GradScaler), but the run is on "
                          f"{device.type}; use 'bf16' (or 'fp32') there")


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The autocast context of `precision` on `device` (no context for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> "torch.amp.GradScaler | None":
    """A GradScaler for fp16 (on CUDA), else None."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def compiled(network: nn.Module, *, announce: bool = True) -> Callable[..., Any]:
    """`torch.compile(network)` that falls back to `network` itself, with one line on stderr, when it fails."""
    try:
        fast = torch.compile(network)
    except Exception as err:  # noqa: BLE001 - any failure to set up the compiler means eager
        _fall_back(err, announce)
        return network
    state = {"fast": fast}

    def forward(*args: Any, **kwargs: Any) -> Any:
        if state["fast"] is None:
            return network(*args, **kwargs)
        try:
            return state["fast"](*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as err:  # the compiler failed, not the model
            _fall_back(err, announce)
            state["fast"] = None
            return network(*args, **kwargs)

    return forward


def checkpoint_activations(model: nn.Module) -> int:
    """Make every TransformerBlock of `model` recompute its activations in backward (once: a second call
    changes nothing); returns how many blocks do."""
    from torch.utils.checkpoint import checkpoint

    from fmblocks.blocks.block import TransformerBlock

    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    for block in blocks:
        if "forward" not in vars(block):  # an instance attribute: the module tree and state_dict names stay
            block.forward = _recomputed(block.forward, checkpoint)
    return len(blocks)


def _recomputed(forward: Callable[..., Any], checkpoint: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # evaluation: nothing to save, nothing to recompute
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def _fall_back(err: BaseException, announce: bool) -> None:
    if announce:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        print(f"fmblocks: torch.compile is unavailable here ({type(err).__name__}: {reason}); training in eager mode",
              file=sys.stderr)
