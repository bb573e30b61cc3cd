"""Process-group setup: one code path for a laptop CPU and `torchrun` across GPUs/nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int
    world: int
    device: torch.device
    owner: bool = False  # this setup started the process group, so its teardown ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> DistInfo:
    """Read torchrun's environment; start NCCL on GPUs or gloo on CPU when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owner = world > 1 and not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, dev, owner)


def teardown(info: DistInfo) -> None:
    """End the process group if `info`'s setup started it: runs inside an outer setup
    (the members of `train --seeds`) share its group, since starting a second group in
    one torchrun job can hang on the first one's rendezvous keys."""
    if info.owner and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Interleave each rank's rows back into global lane order (lane b = rank + world*j)."""
    if not info.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(info.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.stack(parts, dim=1).flatten(0, 1)


def broadcast(obj, info: DistInfo):
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
