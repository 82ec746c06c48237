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
`checkpoint` or, in that instant, under `.checkpoint.previous`, which `find_checkpoint` falls back
to. A failed write (disk full, read-only) raises `WriteError` and leaves the previous checkpoint as
it was. Reading checks every file: a missing file, a truncated or foreign file, a tensor whose shape
or dtype does not fit the model, or an impossible optimizer value raises `CheckpointError` (or its
`CorruptCheckpointError`) naming the file, tensor or field.

A sharded (FSDP) run passes its gathered whole state as `weights` and `optimizer_state` (see `fsdp.py`),
so its files are those of an unsharded run; `read_weights` and `read_optimizer` check a checkpoint
against a model and optimizer, sharded or not, and return the whole state for the caller to load.
"""

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from fmblocks.errors import CheckpointError, CorruptCheckpointError, CorruptFileError
from fmblocks.files import read_json, read_tensors, unique_sibling, write_errors, write_json, write_tensors

CHECKPOINT_DIR = "checkpoint"
CONFIG_FILE, MODEL_FILE = "config.json", "model.safetensors"
OPTIMIZER_FILE, STATE_FILE = "optimizer.safetensors", "trainer_state.json"
STATE_FORMAT = "fmblocks-trainer-state"


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    model: nn.Module,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    model_config: Any = None,
    weights: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to `directory` (replacing any previous one) and return its path.

    `weights` and `optimizer_state` replace `model.state_dict()` and `optimizer.state_dict()` (a sharded
    run's gathered state, in the same layout)."""
    target = Path(directory)
    with write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{target.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed process
        partial = unique_sibling(target, prefix="partial-")
        partial.mkdir()  # mode 0777 less the umask
    try:
        if model_config is not None:
            model_config.save(partial / CONFIG_FILE)
        write_tensors(partial / MODEL_FILE, _stored_tensors(model.state_dict() if weights is None else weights))
        if optimizer is not None or optimizer_state is not None:
            tensors, structure = _flatten_optimizer(optimizer.state_dict() if optimizer_state is None
                                                    else optimizer_state)
            write_tensors(partial / OPTIMIZER_FILE, tensors, metadata={"structure": json.dumps(structure)})
        write_json(partial / STATE_FILE, state, fmt=STATE_FORMAT)
        backup = target.with_name(f".{target.name}.previous")
        with write_errors(target):
            if target.exists():
                shutil.rmtree(backup, ignore_errors=True)
                os.replace(target, backup)
            os.replace(partial, target)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """The checkpoint directory for `path` (itself, or `path/checkpoint` for a run directory), or None.

    When a crash between the two renames of `save_checkpoint` left only `.checkpoint.previous`, that is
    the run's one checkpoint, and is returned.
    """
    path = Path(path)
    for candidate in (path, path / CHECKPOINT_DIR):
        if (candidate / STATE_FILE).exists() or (candidate / MODEL_FILE).exists():
            return candidate
        backup = candidate.with_name(f".{candidate.name}.previous")
        if not candidate.exists() and (backup / STATE_FILE).exists():
            return backup
    return None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """`find_checkpoint(path)`, or a CheckpointError saying what was expected there."""
    found = find_checkpoint(path)
    if found is not None:
        return found
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
    model.load_state_dict(read_weights(model, path))


def read_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint's weights as a whole state_dict for `model` (every name, tied ones too), checked against
    its tensors' shapes and dtypes (the whole shapes, for a sharded model); see `load_weights`."""
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
        elif stored[source].dtype != tensor.dtype:
            problems.append(f"{name}: checkpoint has dtype {stored[source].dtype}, the model expects {tensor.dtype}")
        else:
            full[name] = stored[source]
    problems += [f"{name}: in the checkpoint but not in the model" for name in stored if name not in expected]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
        raise CheckpointError(f"{directory / MODEL_FILE} does not fit this model (trained with another config?): {shown}")
    return full


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Restore an optimizer saved by `save_checkpoint`; groups, shapes, dtypes and values must fit it."""
    optimizer.load_state_dict(read_optimizer(optimizer, path))


def read_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> dict[str, Any]:
    """The optimizer state_dict of a checkpoint, checked against `optimizer` (see `load_optimizer`)."""
    directory = resolve_checkpoint(path)
    require_files(directory, [OPTIMIZER_FILE])
    file = directory / OPTIMIZER_FILE
    tensors = _read(file)
    try:
        with safe_open(str(file), "pt") as handle:
            structure = json.loads((handle.metadata() or {})["structure"])
        state_dict = _unflatten_optimizer(tensors, structure)
    except (SafetensorError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CorruptCheckpointError(f"{file}: malformed optimizer structure ({err!r})") from None
    ours = optimizer.state_dict()["param_groups"]
    theirs = state_dict["param_groups"]
    if [len(g["params"]) for g in ours] != [len(g["params"]) for g in theirs]:
        raise CheckpointError(
            f"{file}: optimizer has parameter groups of sizes {[len(g['params']) for g in theirs]}, "
            f"this model's optimizer {[len(g['params']) for g in ours]} (trained with another config?)"
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    _check_optimizer(state_dict, ours, params, file)
    return state_dict


def _check_optimizer(state_dict: dict[str, Any], ours: list[dict[str, Any]], params: list[torch.Tensor],
                     file: Path) -> None:
    """CheckpointError for a state that does not fit `params`, CorruptCheckpointError for an impossible one."""
    def corrupt(field: str, value: Any, expected: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{file}: {field} is {value!r}, expected {expected}")

    indices = [i for group in state_dict["param_groups"] for i in group["params"]]
    if indices != list(range(len(params))):
        raise corrupt("param_groups[*].params", indices, f"the parameter indices 0..{len(params) - 1} in order")
    for g, (mine, saved) in enumerate(zip(ours, state_dict["param_groups"])):
        for key, value in mine.items():
            if key != "params" and not _same_kind(saved.get(key), value):
                raise corrupt(f"param_groups[{g}].{key}", saved.get(key), f"a value like {value!r}")
    for index, entry in state_dict["state"].items():
        if index not in range(len(params)):
            raise corrupt(f"state.{index}", "present", f"parameter indices 0..{len(params) - 1}")
        for key, value in entry.items():
            field = f"state.{index}.{key}"
            if key == "step":
                number = value.item() if torch.is_tensor(value) and value.numel() == 1 else value
                if torch.is_tensor(value) and not value.is_floating_point():
                    raise CheckpointError(f"{file}: {field} has dtype {value.dtype}, expected a floating-point scalar")
                if not (isinstance(number, (int, float)) and math.isfinite(number) and number >= 0
                        and number == int(number)):
                    raise corrupt(field, number, "a whole number >= 0")
            elif torch.is_tensor(value) and value.ndim:
                param = params[index]
                if value.shape != param.shape:
                    raise CheckpointError(f"{file}: {field} has shape {tuple(value.shape)}, the parameter {tuple(param.shape)}")
                if value.dtype != param.dtype:
                    raise CheckpointError(f"{file}: {field} has dtype {value.dtype}, the parameter {param.dtype}")


def _same_kind(saved: Any, ours: Any) -> bool:
    """Whether an optimizer setting read back is of the kind of ours: a finite number for a number (int or
    float), a flag (or None) for a flag, else the same type."""
    if isinstance(ours, bool) or ours is None:
        return saved is None or isinstance(saved, bool)
    if isinstance(ours, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved)
    if isinstance(ours, tuple):
        return isinstance(saved, tuple) and len(saved) == len(ours) and all(map(_same_kind, saved, ours))
    return type(saved) is type(ours)


def _read(file: Path) -> dict[str, torch.Tensor]:
    try:
        return read_tensors(file)
    except CorruptFileError as err:
        raise CorruptCheckpointError(str(err)) from None


def _storage_key(tensor: torch.Tensor) -> tuple:
    """Identifies tensors that are views of the same memory (tied weights)."""
    if hasattr(tensor, "to_local"):  # a DTensor (sharded run): its shard stands for it
        tensor = tensor.to_local()
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
    groups = [{**group, "params": list(group["params"]),
               **({"betas": tuple(group["betas"])} if "betas" in group else {})} for group in structure["param_groups"]]
    return {"state": state, "param_groups": groups}
