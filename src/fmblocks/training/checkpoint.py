"""Checkpoints: one directory, written whole or not at all, with no pickle anywhere.

    checkpoint/
      config.json             ModelConfig (absent for a model without one; then use load_weights)
      model.safetensors       state_dict, tied tensors stored once
      optimizer.safetensors   optimizer tensors "state.<param index>.<name>"; the rest of the
                              optimizer state_dict (param groups, scalars) as JSON in the metadata
      trainer_state.json      step, data position, RNG states (lists of bytes), history, TrainConfig

Atomicity: files go to a fresh sibling `.checkpoint.partial-*`, which then takes the name
`checkpoint` (the old one is moved to `.checkpoint.previous` for the instant between the two renames
and deleted afterwards). A crash at any point leaves the previous checkpoint readable under
`checkpoint` or, in that instant, under `.checkpoint.previous`, which `resolve_checkpoint` falls
back to. Reading checks every file: a missing file, a truncated or foreign file, or a tensor whose
shape does not fit the model raises `CheckpointError` naming the file or tensor.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from fmblocks.errors import CheckpointError, CorruptFileError
from fmblocks.files import read_json, read_tensors, write_json, write_tensors

CHECKPOINT_DIR = "checkpoint"
CONFIG_FILE, MODEL_FILE = "config.json", "model.safetensors"
OPTIMIZER_FILE, STATE_FILE = "optimizer.safetensors", "trainer_state.json"
STATE_FORMAT = "fmblocks-trainer-state"


class CorruptCheckpointError(CheckpointError, CorruptFileError):
    """A checkpoint file is truncated, malformed or of another format."""


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    model: nn.Module,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    model_config: Any = None,
) -> Path:
    """Write a checkpoint atomically to `directory` (replacing any previous one) and return its path."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed process
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        if model_config is not None:
            model_config.save(partial / CONFIG_FILE)
        write_tensors(partial / MODEL_FILE, _stored_tensors(model.state_dict()))
        if optimizer is not None:
            tensors, structure = _flatten_optimizer(optimizer.state_dict())
            write_tensors(partial / OPTIMIZER_FILE, tensors, metadata={"structure": json.dumps(structure)})
        write_json(partial / STATE_FILE, state, fmt=STATE_FORMAT)
        backup = target.with_name(f".{target.name}.previous")
        if target.exists():
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
        os.replace(partial, target)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory for `path`: itself, or `path/checkpoint` for a run directory."""
    path = Path(path)
    for candidate in (path, path / CHECKPOINT_DIR):
        if (candidate / STATE_FILE).exists() or (candidate / MODEL_FILE).exists():
            return candidate
        backup = candidate.with_name(f".{candidate.name}.previous")
        if not candidate.exists() and (backup / STATE_FILE).exists():
            return backup  # a crash between the two renames of save_checkpoint
    raise CheckpointError(f"{path}: no checkpoint here (expected {MODEL_FILE} and {STATE_FILE}, or a {CHECKPOINT_DIR}/ directory)")


def require_files(directory: Path, names: list[str]) -> None:
    """CheckpointError naming every file of `names` missing from `directory`."""
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: incomplete checkpoint, missing {', '.join(missing)} (expected {', '.join(names)})")


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model in eval mode, its ModelConfig, trainer state) from a checkpoint or run directory."""
    from fmblocks.models import ModelConfig, build_model

    directory = resolve_checkpoint(path)
    require_files(directory, [CONFIG_FILE, MODEL_FILE, STATE_FILE])
    try:
        config = ModelConfig.load(directory / CONFIG_FILE)
    except CorruptFileError as err:
        raise CorruptCheckpointError(str(err)) from None
    model = build_model(config)
    load_weights(model, directory)
    return model.to(device).eval(), config, read_state(directory)


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The trainer_state.json document of a checkpoint."""
    directory = resolve_checkpoint(path)
    require_files(directory, [STATE_FILE])
    try:
        return read_json(directory / STATE_FILE, fmt=STATE_FORMAT)
    except CorruptFileError as err:
        raise CorruptCheckpointError(str(err)) from None


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Copy a checkpoint's weights into `model`; CheckpointError names any missing, extra or misshapen tensor."""
    directory = resolve_checkpoint(path)
    require_files(directory, [MODEL_FILE])
    stored = _read(directory / MODEL_FILE)
    expected = model.state_dict()
    tied: dict[tuple, list[str]] = {}
    for name, tensor in expected.items():
        tied.setdefault(_storage_key(tensor), []).append(name)
    full, problems = {}, []
    for name, tensor in expected.items():
        source = next((n for n in [name, *tied[_storage_key(tensor)]] if n in stored), None)
        if source is None:
            problems.append(f"{name}: missing from the checkpoint")
        elif stored[source].shape != tensor.shape:
            problems.append(f"{name}: checkpoint has shape {tuple(stored[source].shape)}, the model expects {tuple(tensor.shape)}")
        else:
            full[name] = stored[source]
    problems += [f"{name}: in the checkpoint but not in the model" for name in stored if name not in expected]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
        raise CheckpointError(f"{directory / MODEL_FILE} does not fit this model (trained with another config?): {shown}")
    model.load_state_dict(full)


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Restore an optimizer saved by `save_checkpoint`; the parameter groups and shapes must match."""
    directory = resolve_checkpoint(path)
    require_files(directory, [OPTIMIZER_FILE])
    file = directory / OPTIMIZER_FILE
    tensors = _read(file)
    try:
        with safe_open(str(file), "pt") as handle:
            structure = json.loads((handle.metadata() or {})["structure"])
        state_dict = _unflatten_optimizer(tensors, structure)
    except (SafetensorError, KeyError, TypeError, ValueError) as err:
        raise CorruptCheckpointError(f"{file}: malformed optimizer structure ({err!r})") from None
    ours = optimizer.state_dict()["param_groups"]
    theirs = state_dict["param_groups"]
    if [len(g["params"]) for g in ours] != [len(g["params"]) for g in theirs]:
        raise CheckpointError(
            f"{file}: optimizer has parameter groups of sizes {[len(g['params']) for g in theirs]}, "
            f"this model's optimizer {[len(g['params']) for g in ours]} (trained with another config?)"
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value) and value.ndim and value.shape != params[index].shape:
                raise CheckpointError(
                    f"{file}: state.{index}.{key} has shape {tuple(value.shape)}, the parameter {tuple(params[index].shape)}"
                )
    optimizer.load_state_dict(state_dict)


def _read(file: Path) -> dict[str, torch.Tensor]:
    try:
        return read_tensors(file)
    except CorruptFileError as err:
        raise CorruptCheckpointError(str(err)) from None


def _storage_key(tensor: torch.Tensor) -> tuple:
    """Identifies tensors that are views of the same memory (tied weights)."""
    if tensor.numel() == 0:
        return (id(tensor),)
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())


def _stored_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict with each shared tensor kept under its first name only."""
    kept: dict[tuple, str] = {}
    for name, tensor in state_dict.items():
        kept.setdefault(_storage_key(tensor), name)
    return {name: state_dict[name] for name in kept.values()}


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors named state.<i>.<key>, JSON structure with the non-tensor rest)."""
    tensors, state = {}, {}
    for index, entry in state_dict["state"].items():
        state[str(index)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value
                state[str(index)][key] = {"tensor": f"state.{index}.{key}"}
            else:
                state[str(index)][key] = {"value": value}
    return tensors, {"param_groups": state_dict["param_groups"], "state": state}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], structure: dict[str, Any]) -> dict[str, Any]:
    state = {
        int(index): {key: tensors[slot["tensor"]] if "tensor" in slot else slot["value"] for key, slot in entry.items()}
        for index, entry in structure["state"].items()
    }
    groups = [{**group, **({"betas": tuple(group["betas"])} if "betas" in group else {})} for group in structure["param_groups"]]
    return {"state": state, "param_groups": groups}
