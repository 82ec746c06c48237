"""The trainer state of a checkpoint (trainer_state.json): what exact resume needs besides the tensors.

    step             optimizer steps taken (an integer >= 0)
    position         examples consumed from the seeded stream = step * batch_size * grad_accum
    rng              {"torch": the CPU generator's bytes, "cuda": one list of bytes per GPU (optional)}
    history          the rows of Trainer.fit's history so far (dicts with at least "step")
    pending_losses   train losses since the last history row (finite numbers)
    train_config     the TrainConfig of the run, as TrainConfig.to_dict()
    world_size       processes that trained it

`checked_state` reads these back and refuses any impossible value (a negative or infinite step, a
float position, a list where a dict belongs, a byte outside 0..255) with a CorruptCheckpointError
naming the field, so a damaged file never trains from step -50 or fails later with a raw TypeError.
"""

import math
from pathlib import Path
from typing import Any

import torch

from fmblocks.errors import ConfigError, CorruptCheckpointError
from fmblocks.training.config import TrainConfig

# TrainConfig fields a resumed run may change: they leave the updates alone (steps only moves the end of
# the schedule). Every other field shapes the updates, so a checkpoint refuses a config that changes it.
# `compile`, `activation_checkpointing` and `strategy` (where the weights live: whole in every process, or
# sharded) change how a step is computed, not what it computes; `precision` changes the updates, so it stays.
# The process count is not a field: the global batch is the same for any count, so it may change too.
RESUMABLE_FIELDS = ("steps", "eval_every", "eval_batches", "checkpoint_every", "log_every", "device", "progress",
                    "compile", "peak_flops", "activation_checkpointing", "strategy")


def rng_state() -> dict[str, Any]:
    """The torch random generators (CPU, and every GPU when CUDA is available) as JSON-ready byte lists."""
    rng = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        rng["cuda"] = [state.tolist() for state in torch.cuda.get_rng_state_all()]
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    """Set the generators saved by `rng_state` (the CUDA ones only where CUDA is available)."""
    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    if torch.cuda.is_available() and "cuda" in rng:
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in rng["cuda"]])


def checked_state(state: dict[str, Any], file: Path) -> dict[str, Any]:
    """The fields of a trainer state, each checked; `train_config` comes back as a TrainConfig."""

    def field(name: str, expected: str, valid: Any) -> Any:
        value = state.get(name)
        if name not in state or not valid(value):
            shown = "missing" if name not in state else f"{value!r}"[:80]
            raise CorruptCheckpointError(f"{file}: field {name!r} is {shown}, expected {expected}")
        return value

    checked = {
        "step": field("step", "an integer >= 0", _count),
        "position": field("position", "an integer >= 0", _count),
        "history": field("history", "a list of rows with an integer 'step'", _rows),
        "pending_losses": field("pending_losses", "a list of finite numbers",
                                lambda v: isinstance(v, list) and all(map(_finite, v))),
        "rng": field("rng", "{'torch': a list of bytes, 'cuda': [lists of bytes]}", _rng),
    }
    try:
        checked["train_config"] = TrainConfig.from_dict(state["train_config"])
    except (KeyError, ConfigError, TypeError, ValueError) as err:
        raise CorruptCheckpointError(f"{file}: field 'train_config' is not a valid TrainConfig ({err})") from None
    per_step = checked["train_config"].batch_size * checked["train_config"].grad_accum
    if checked["position"] != checked["step"] * per_step:
        raise CorruptCheckpointError(f"{file}: field 'position' is {checked['position']}, expected step "
                                     f"{checked['step']} x {per_step} examples per step = {checked['step'] * per_step}")
    return checked


def config_conflicts(saved: TrainConfig, ours: TrainConfig) -> list[str]:
    """'name: checkpoint X, now Y' for each field outside RESUMABLE_FIELDS on which the configs differ."""
    old, new = saved.to_dict(), ours.to_dict()
    return [f"{name}: checkpoint {old[name]!r}, now {new[name]!r}"
            for name in new if name not in RESUMABLE_FIELDS and old[name] != new[name]]


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _rows(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(row, dict) and _count(row.get("step")) for row in value)


def _bytes(value: Any) -> bool:
    return isinstance(value, list) and all(_count(b) and b < 256 for b in value)


def _rng(value: Any) -> bool:
    return (isinstance(value, dict) and _bytes(value.get("torch"))
            and (isinstance(value.get("cuda", []), list) and all(map(_bytes, value.get("cuda", [])))))
