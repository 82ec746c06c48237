"""Hugging Face model directories in and out, for every architecture in `ARCHITECTURES`.

    model = from_pretrained("dir")          config.json + model.safetensors (or a sharded
                                            model.safetensors.index.json) -> an fmblocks model, eval mode
    save_pretrained(model, "out")           config.json + model.safetensors that transformers loads
    save_pretrained(model, "out", tokenizer=tok)   + tokenizer.json, when `tok.to_hf()` exists (see below)

An architecture (`HubArch`, one module each) is data plus two config translations:
    model_types, hf_class       the config.json names it reads and writes
    weights                     the weight-name map: `Weight(ours, theirs, layout)` entries, names
                                being prefixes ("{i}" = layer index) completed by ".weight" / ".bias"
                                (or whole names); `ours` a tuple = several of our tensors fused along
                                dim 0 in theirs (GPT-2's c_attn = [q; k; v]); `layout` a key of LAYOUTS
                                when they store the tensor in another shape (Conv1D's (in, out), ...)
    tied                        their name of the output matrix omitted when the embeddings are tied
    metadata                    config.json fields kept from the loaded config on save (class labels)
    ignored                     a regex (searched) of their tensors that have no place in the model (buffers, pooler)
    absent                      a regex of our tensors it does not store (BertModel: the MLM head)
    aliases                     (regex, replacement) pairs for legacy names in their files (read only)
    to_config(hf) / from_config(config)   config.json dict <-> ModelConfig (CheckpointError naming a field
                                fmblocks does not implement, with the values it does)

Loading keeps the checkpoint's dtype and remembers `model.hub_arch` and `model.hub_config` (the config.json
it came from), so that saving writes the same architecture and keeps the fields fmblocks does not use (token
ids, labels); `model.hub_fresh` names our tensors the directory did not hold (BertModel's masked-LM head:
freshly initialised, untrained). Building happens on the meta device, so no random init is spent on weights
the checkpoint replaces. Tensors are read with safetensors only; pickle files are refused.
A tokenizer is exported through its `to_hf()` method, which returns the tokenizer.json document (a dict);
a tokenizer without one is not written, and `save_pretrained` returns the names it wrote, so callers can
say so. Limits: one weights file is written (no sharding on save).
"""

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from fmblocks.errors import CheckpointError, ConfigError, CorruptFileError
from fmblocks.files import read_tensors, write_bytes, write_tensors
from fmblocks.models.config import ModelConfig


class Weight(NamedTuple):
    """Our tensor name prefix(es) and theirs; "{i}" stands for the layer index."""

    ours: str | tuple[str, ...]
    theirs: str
    layout: str = ""


def _patch_to_ours(t: torch.Tensor, c: ModelConfig) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1) if t.dim() == 4 else t  # (D, C, P, P) -> (D, P*P*C)


def _patch_to_theirs(t: torch.Tensor, c: ModelConfig) -> torch.Tensor:
    return t.reshape(t.shape[0], c.patch_size, c.patch_size, c.channels).permute(0, 3, 1, 2) if t.dim() == 2 else t


# layout -> (their tensor -> ours, ours -> theirs); biases (1-D) pass through the weight layouts unchanged
LAYOUTS: dict[str, tuple[Callable, Callable]] = {
    "": (lambda t, c: t, lambda t, c: t),
    "conv1d": (lambda t, c: t.T if t.dim() == 2 else t, lambda t, c: t.T if t.dim() == 2 else t),  # (in, out)
    "patch": (_patch_to_ours, _patch_to_theirs),  # a stride-P Conv2d (D, C, P, P) as PatchEmbed's (D, P*P*C)
    "batch1": (lambda t, c: t[0], lambda t, c: t[None]),  # (1, N, D) <-> (N, D)
}


@dataclass(frozen=True)
class HubArch:
    """One Hugging Face architecture: its names, its weight-name map and its config translations."""

    name: str
    model_types: tuple[str, ...]
    hf_class: str
    weights: list[Weight]
    to_config: Callable[[dict], ModelConfig]
    from_config: Callable[[ModelConfig], dict]
    tied: str = "lm_head.weight"
    metadata: tuple[str, ...] = ()
    ignored: str = r"^$"
    absent: str = r"^$"  # our tensors this architecture does not store (freshly initialised on load)
    aliases: tuple = ()  # (regex, replacement) renaming legacy checkpoint names on load (ESM's gamma/beta)


ARCHITECTURES: dict[str, HubArch] = {}
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
                  "silu": "silu"}


def register(arch: HubArch) -> HubArch:
    ARCHITECTURES[arch.name] = arch
    return arch


def check_fixed(hf: dict, fixed: dict[str, tuple], arch: str) -> None:
    """CheckpointError naming the first config field whose value fmblocks does not implement."""
    for name, allowed in fixed.items():
        if name in hf and hf[name] not in allowed:
            raise CheckpointError(f"{arch} config field {name}={hf[name]!r} is not supported by fmblocks; "
                                  f"supported: {', '.join(map(repr, allowed))}")


def hf_field(hf: dict, name: str, arch: str) -> Any:
    """hf[name], or CheckpointError saying the config lacks it."""
    if hf.get(name) is None:
        raise CheckpointError(f"{arch} config.json lacks {name!r}")
    return hf[name]


EXACT_CORES = ("sdpa", "math", "chunked")  # attention cores that compute full softmax attention


def require(config: ModelConfig, hub_arch: str, **allowed: tuple) -> None:
    """CheckpointError naming the first config field whose value `hub_arch` cannot express."""
    for name, values in allowed.items():
        value = getattr(config, name)
        if value not in values:
            raise CheckpointError(f"{hub_arch} cannot express {name}={value!r}; it needs one of "
                                  f"{', '.join(map(repr, values))}")


def build_config(hub_arch: str, **fields: Any) -> ModelConfig:
    """ModelConfig(**fields); a value fmblocks refuses becomes a CheckpointError naming the architecture."""
    try:
        return ModelConfig(**fields)
    except ConfigError as err:
        raise CheckpointError(f"{hub_arch} config is not one fmblocks can build: {err}") from None


# --- the name plan: their tensor -> our tensors ---------------------------------------------------------


def name_plan(arch: HubArch, config: ModelConfig, ours: dict[str, torch.Tensor]) -> dict[str, tuple[list[str], str]]:
    """Their name -> (our names fused along dim 0, layout) for every tensor of `ours` (a state dict)."""
    plan: dict[str, tuple[list[str], str]] = {}
    for weight in arch.weights:
        mine = (weight.ours,) if isinstance(weight.ours, str) else weight.ours
        layers = range(config.n_layers) if "{i}" in weight.theirs else [None]
        for i in layers:
            for suffix in (".weight", ".bias", ""):
                names = [m.replace("{i}", str(i)) + suffix for m in mine]
                if all(n in ours for n in names):
                    plan[weight.theirs.replace("{i}", str(i)) + suffix] = (names, weight.layout)
    if config.tie_embeddings:
        plan.pop(arch.tied, None)
    covered = {n for names, _ in plan.values() for n in names}
    left = [n for n in ours if n not in covered and not _is_tied(n, ours, covered) and not re.search(arch.absent, n)]
    if left:
        raise CheckpointError(f"{arch.name}: fmblocks tensors with no checkpoint name: {left[:5]}")
    return plan


def _is_tied(name: str, ours: dict[str, torch.Tensor], covered: set[str]) -> bool:
    """True when `name` shares its storage with a tensor already in the plan (a tied output matrix)."""
    return any(ours[name].data_ptr() == ours[c].data_ptr() for c in covered)


# --- reading ---------------------------------------------------------------------------------------------


def read_config(path: Path) -> dict:
    """config.json of a model directory as a dict (CheckpointError / CorruptFileError otherwise)."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a model directory")
    file = path / "config.json"
    if not file.exists():
        raise CheckpointError(f"{path}: no config.json (a Hugging Face model directory has config.json and "
                              "model.safetensors)")
    try:
        hf = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(hf, dict):
        raise CorruptFileError(f"{file}: expected a JSON object")
    return hf


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of model.safetensors or of the shards named by model.safetensors.index.json."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.exists():
        return read_tensors(single)
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CorruptFileError(f"{index}: not a safetensors index with a weight_map ({err})") from None
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_tensors(path / shard))
        return tensors
    pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
    if pickles:
        raise CheckpointError(
            f"{path}: weights only as pickle ({', '.join(pickles)}); fmblocks reads safetensors only, since "
            "unpickling runs code. Convert once, in an environment you trust: python -c \"import transformers; "
            f"transformers.AutoModel.from_pretrained('{path}').save_pretrained('{path}', safe_serialization=True)\"")
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")


def arch_of(hf: dict) -> HubArch:
    """The architecture of a config.json dict: by model_type, then by the class in `architectures`
    (CheckpointError listing the supported)."""
    candidates = [a for a in ARCHITECTURES.values() if hf.get("model_type") in a.model_types]
    for arch in candidates:
        if arch.hf_class in (hf.get("architectures") or []):
            return arch
    if candidates:
        return candidates[-1]
    known = sorted(t for a in ARCHITECTURES.values() for t in a.model_types)
    raise CheckpointError(f"model_type {hf.get('model_type')!r} (architectures {hf.get('architectures')}) is not "
                          f"supported; supported model types: {', '.join(known)}")


def from_pretrained(path: str | os.PathLike) -> nn.Module:
    """The fmblocks model of a local Hugging Face directory, with its weights, in eval mode."""
    from fmblocks.models import build_model

    path = Path(path)
    hf = read_config(path)
    arch = arch_of(hf)
    config = arch.to_config(hf)
    tensors = read_weights(path)
    for pattern, replacement in arch.aliases:
        tensors = {re.sub(pattern, replacement, name): t for name, t in tensors.items()}
    with torch.device("meta"):  # no random init: every weight comes from the checkpoint
        model = build_model(config)
    _materialize(model)
    floating = [t.dtype for t in tensors.values() if t.is_floating_point()]
    model = model.to(floating[0] if floating else torch.float32)
    ours = model.state_dict()
    plan = name_plan(arch, config, ours)
    state = {}
    for theirs, (names, layout) in plan.items():
        if theirs not in tensors:
            continue
        tensor = LAYOUTS[layout][0](tensors[theirs], config)
        parts = tensor.split([ours[n].shape[0] for n in names]) if len(names) > 1 else [tensor]
        for name, part in zip(names, parts):
            if part.shape != ours[name].shape:
                raise CheckpointError(f"{path}: {theirs}: shape {tuple(tensors[theirs].shape)} in the checkpoint "
                                      f"does not give {name} its shape {tuple(ours[name].shape)}")
            state[name] = part
    missing = [theirs for theirs in plan if theirs not in tensors]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing[:5]} ({len(missing)} in all)")
    unused = sorted(n for n in tensors if n not in plan and n != arch.tied and not re.search(arch.ignored, n))
    if unused:
        raise CheckpointError(f"{path}: checkpoint tensors with no place in the {arch.name} model: {unused[:5]}")
    model.load_state_dict(state, strict=False, assign=False)
    covered = set(state)
    fresh = [n for n in ours if re.search(arch.absent, n) and not _is_tied(n, ours, covered)]
    _fill_fresh(model, config, fresh)
    model.hub_arch, model.hub_config, model.hub_fresh = arch.name, hf, tuple(fresh)
    return model.eval()


def _materialize(model: nn.Module) -> None:
    """Give a model built on the meta device uninitialised CPU storage, keeping tied parameters tied."""
    first: dict[int, str] = {}
    aliases = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases.append((name, first[id(param)]))
        else:
            first[id(param)] = name
    model.to_empty(device="cpu")
    for alias, source in aliases:
        owner, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(owner), attr, model.get_parameter(source))


def _fill_fresh(model: nn.Module, config: ModelConfig, absent: list[str]) -> None:
    """Copy a freshly built model's non-persistent buffers (lost on meta) and the tensors in `absent`."""
    from fmblocks.models import build_model

    buffers = [name for name, _ in model.named_buffers() if name not in model.state_dict()]
    if not buffers and not absent:
        return
    fresh = build_model(config).to(next(model.parameters()).dtype)
    values = {**dict(fresh.named_buffers()), **fresh.state_dict()}
    targets = {**dict(model.named_buffers()), **dict(model.named_parameters())}
    with torch.no_grad():
        for name in buffers + absent:
            targets[name].copy_(values[name])


# --- writing ---------------------------------------------------------------------------------------------


def hub_state_dict(model: nn.Module, arch: HubArch) -> dict[str, torch.Tensor]:
    """The model's weights under the architecture's checkpoint names (fused, transposed as it stores them)."""
    ours = model.state_dict()
    tensors = {}
    for theirs, (names, layout) in name_plan(arch, model.config, ours).items():
        tensor = torch.cat([ours[n] for n in names]) if len(names) > 1 else ours[names[0]]
        tensors[theirs] = LAYOUTS[layout][1](tensor, model.config).detach().contiguous().clone()
    return tensors


def hf_tokenizer_document(tokenizer: Any) -> dict | None:
    """The tokenizer.json document of an fmblocks tokenizer (its `to_hf()`), or None when it has no export."""
    export = getattr(tokenizer, "to_hf", None)
    if export is None:
        return None
    document = export()
    return json.loads(document) if isinstance(document, (str, bytes)) else document


def save_pretrained(model: nn.Module, path: str | os.PathLike, *, arch: str | None = None,
                    tokenizer: Any = None) -> list[str]:
    """Write `model` as a Hugging Face directory (config.json, model.safetensors) of architecture `arch`,
    and `tokenizer` as tokenizer.json when it can be exported; returns the file names written.

    `arch` defaults to the one the model was loaded as, else the first in ARCHITECTURES that can express
    its config; CheckpointError when none can (the message says why each refused).
    """
    loaded_as = getattr(model, "hub_arch", None)
    chosen, reasons = None, []
    for name in [arch or loaded_as] if arch or loaded_as else list(ARCHITECTURES):
        if name not in ARCHITECTURES:
            raise CheckpointError(f"unknown architecture {name!r}; supported: {', '.join(ARCHITECTURES)}")
        try:
            hf = ARCHITECTURES[name].from_config(model.config)
            chosen = ARCHITECTURES[name]
            break
        except CheckpointError as err:
            reasons.append(f"{name}: {err}")
    if chosen is None:
        raise CheckpointError("no Hugging Face architecture can express this model: " + "; ".join(reasons))
    original = (getattr(model, "hub_config", None) or {}) if chosen.name == loaded_as else {}
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    document = {**original, "dtype": dtype, **hf, **{k: original[k] for k in chosen.metadata if k in original}}
    tokens = hf_tokenizer_document(tokenizer) if tokenizer is not None else None
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_tensors(path / "model.safetensors", hub_state_dict(model, chosen), metadata={"format": "pt"})
    write_bytes(path / "config.json", (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    written = ["config.json", "model.safetensors"]
    if tokens is not None:
        write_bytes(path / "tokenizer.json", (json.dumps(tokens, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        written.append("tokenizer.json")
    return written
