"""Multi-process training under `torchrun`: who am I, which device, and sums across processes.

`torchrun --nproc_per_node W script ...` starts W copies with RANK, LOCAL_RANK and WORLD_SIZE (and the
rendezvous MASTER_ADDR/MASTER_PORT) in the environment. `init_distributed` reads them and joins the
process group: NCCL when training on CUDA (one GPU per local rank), gloo on CPU. Without those
variables it returns a single-process context and touches nothing.

`distribute(model, strategy, context)` readies the model for the run's `TrainConfig.strategy`:
    ddp    `torch.nn.parallel.DistributedDataParallel`: a whole copy in every process, gradients all-reduced
           (averaged) after each backward
    fsdp   FSDP2 `fully_shard` per TransformerBlock, then the root (see `fsdp.py`): weights, gradients and
           optimizer state sharded over the processes, gradients reduce-scattered (averaged)
Alone (world size 1) both leave the model as it is. `skip_gradient_sync` keeps the gradients of the
micro-batches before the last of an accumulated step local (DDP's no_sync, FSDP's
set_requires_gradient_sync), so the processes communicate once per step.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fmblocks.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank in range(world_size), its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files and shows progress."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA is available, else cpu; other names pass through."""
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group if WORLD_SIZE > 1 (once per process), else a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    if world_size > 1 and dist.get_world_size() != world_size:
        raise ConfigError(f"process group has {dist.get_world_size()} processes but WORLD_SIZE={world_size}")
    return DistContext(rank, world_size, local_rank, resolved)


def distribute(model: nn.Module, strategy: str, context: DistContext) -> nn.Module:
    """The network to run forward and backward through: `model` wrapped (ddp) or sharded in place (fsdp)
    across the processes; `model` itself when alone. Call it before building the optimizer (FSDP replaces
    the parameters by their shards)."""
    if context.world_size == 1:
        return model
    if strategy == "fsdp":
        from fmblocks.training.fsdp import shard

        shard(model)
        return model
    if strategy == "ddp":
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    raise ConfigError(f"unknown strategy {strategy!r}; known: ddp, fsdp")


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` was sharded by `distribute(..., "fsdp", ...)`."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextmanager
def skip_gradient_sync(network: nn.Module) -> Iterator[None]:
    """Inside, backward passes accumulate gradients locally; the next one outside synchronises them all."""
    if isinstance(network, DistributedDataParallel):
        with network.no_sync():
            yield
    elif is_sharded(network):
        network.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            network.set_requires_gradient_sync(True)
    else:
        yield


def all_sum(tensor: torch.Tensor, context: DistContext) -> torch.Tensor:
    """The element-wise sum of `tensor` over all processes (the tensor itself when alone)."""
    if context.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(context: DistContext) -> None:
    """Wait until every process gets here (no-op when alone)."""
    if context.world_size > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
