"""The processes of a run and the device of each: one process, or ``torchrun`` with DDP.

Under ``torchrun --nproc_per_node=N`` each process joins one process group (NCCL on GPUs, gloo on CPUs),
uses GPU ``LOCAL_RANK`` when CUDA is chosen, and wraps the model in
:class:`torch.nn.parallel.DistributedDataParallel`, which averages gradients with bucketed all-reduces
overlapped with the backward pass.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import ConfigError


def choose_device(request: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when CUDA is available, else the CPU; ``cuda`` without CUDA is an error."""
    if request == "cpu" or (request == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but this torch sees no CUDA GPU "
                          f"(torch {torch.__version__}); use train.device: auto or cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


class Distributed:
    """Rank, world size and device of this process; collective helpers that are no-ops for one process."""

    def __init__(self, device_request: str = "auto"):
        self.launched = "WORLD_SIZE" in os.environ  # started by torchrun (any number of processes)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = choose_device(device_request, int(os.environ.get("LOCAL_RANK", "0")))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.launched and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP over the parameters that require gradients now (re-wrap when that set changes).

        ``find_unused_parameters``: some parameters get no gradient from some tasks (EGNN's last
        coordinate update, an energy readout during vector-head pretraining).
        """
        if not self.launched:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over processes."""
        if not self.launched:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, for every process (time limits differ slightly between processes)."""
        if not self.launched:
            return flag
        tensor = torch.tensor([float(flag)], device=self.device)
        dist.broadcast(tensor, 0)
        return bool(tensor.item())

    def barrier(self) -> None:
        if self.launched:
            dist.barrier()
