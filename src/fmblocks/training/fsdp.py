"""Fully sharded data parallel (FSDP2) for the Trainer: shard the model, and gather or scatter whole state.

    shard(model)                                   # in place, before the optimizer is built
    weights, optimizer_state = full_state(model, optimizer)   # every process calls; rank 0 gets the tensors
    load_full_state(model, optimizer, weights, optimizer_state)   # every process, with the whole state

With W processes, `torch.distributed.fsdp.fully_shard` turns every parameter into a DTensor holding 1/W
of its rows. Each TransformerBlock is one unit: its weights are all-gathered just before its forward
(and again before its backward) and freed after, and its gradients are reduce-scattered, averaged over
the processes, so each process keeps only its shard of the gradients and of the AdamW state. The root
unit holds the rest (embeddings, final norm, output head; a tied head shares the token table there).
Peak memory per process is about 1/W of the weights, gradients and optimizer state, plus one block
gathered whole. The update is the one DDP or a single process makes, up to float rounding.

Checkpoints stay whole and plain: `full_state` gathers the full model and optimizer state dicts onto
rank 0's CPU (`torch.distributed.checkpoint.state_dict` with full_state_dict and cpu_offload) and renames
them into the layout of an unsharded run (tied weights stored once, optimizer state keyed by parameter
index), so a 1-process run, a DDP run or an FSDP run with any number of processes reads the same files.
`load_full_state` is the reverse: every process passes the whole state and keeps its shard.

Limits: the whole state passes through rank 0's CPU memory when saving and every process's when
loading (fine for models that fit one machine's RAM; larger ones want sharded checkpoints, not done
here). A parameter that two modules share must live in one unit: sharding per TransformerBlock assumes
blocks share nothing with each other or with the root (true of every fmblocks model).
"""

from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
SCATTER = StateDictOptions(full_state_dict=True)


def shard(model: nn.Module) -> int:
    """`fully_shard` every TransformerBlock of `model`, then `model` itself (in place); returns the blocks."""
    from fmblocks.blocks.block import TransformerBlock

    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return len(blocks)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model state_dict, optimizer state_dict) whole, on rank 0's CPU, laid out as an unsharded run's
    (empty on the other ranks). Every process must call it: it all-gathers."""
    weights = get_model_state_dict(model, options=GATHER)
    state = get_optimizer_state_dict(model, optimizer, options=GATHER)
    if not weights:  # not rank 0
        return {}, {}
    aliases = _aliases(model)
    return {name: t for name, t in weights.items() if name not in aliases}, by_index(state)


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any]) -> None:
    """Load a whole (unsharded) model and optimizer state into the sharded `model` and its `optimizer`: each
    process keeps its shard. Every process must call it, each with the whole state."""
    set_model_state_dict(model, weights, options=SCATTER)
    names = {id(p): name for name, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    set_optimizer_state_dict(model, optimizer, by_name(optimizer_state, order), options=SCATTER)


def by_index(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state_dict keyed by parameter names (as torch.distributed.checkpoint gives it) -> keyed by
    parameter index, numbering the parameters of the groups in order (as Optimizer.state_dict does).

    >>> by_index({"state": {"b": {"step": 1}}, "param_groups": [{"lr": 0.1, "params": ["a", "b"]}]})
    {'state': {1: {'step': 1}}, 'param_groups': [{'lr': 0.1, 'params': [0, 1]}]}
    """
    order = [name for group in state["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(order)}
    groups, start = [], 0
    for group in state["param_groups"]:
        groups.append({**group, "params": list(range(start, start + len(group["params"])))})
        start += len(group["params"])
    return {"state": {index[name]: entry for name, entry in state["state"].items()}, "param_groups": groups}


def by_name(state: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """The inverse of `by_index`: `order` names the parameters 0, 1, ... of the groups.

    >>> by_name({"state": {1: {"step": 1}}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}, ["a", "b"])
    {'state': {'b': {'step': 1}}, 'param_groups': [{'lr': 0.1, 'params': ['a', 'b']}]}
    """
    groups = [{**group, "params": [order[i] for i in group["params"]]} for group in state["param_groups"]]
    return {"state": {order[i]: entry for i, entry in state["state"].items()}, "param_groups": groups}


def _aliases(model: nn.Module) -> set[str]:
    """Names under which a parameter or buffer already named earlier appears again (tied weights)."""
    seen: set[int] = set()
    aliases = set()
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        if id(tensor) in seen:
            aliases.add(name)
        seen.add(id(tensor))
    return aliases
