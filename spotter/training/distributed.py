"""Data-parallel training across processes with PyTorch's own engine (torch.distributed + DDP).

Launch with `torchrun --nproc_per_node N -m spotter train ...`: torchrun sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT, the CLI opens the process group (NCCL on GPUs, gloo on
CPUs) around the command, and `fit()` wraps the model in DistributedDataParallel. Every rank
computes the same seeded permutation of each epoch and takes its share of every global batch, so
N processes on the same global batch follow the same trajectory as one process (up to float
summation order; BatchNorm statistics: see `fit`). Only rank 0 logs and writes files.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger("spotter")

# Commands that know how to share their work across ranks; others refuse to run under torchrun.
DISTRIBUTED_COMMANDS = ("train", "unlearn")  # unlearn: methods/_common.py


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel group."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> tuple[int, int]:
        """[lo, hi) of a global batch of n samples that this rank trains on (as even as possible)."""
        base, extra = divmod(n, self.world_size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (self.rank < extra)


def launched() -> bool:
    """True when a launcher (torchrun) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Dist | None:
    """The active group (None for a single process, the default)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def is_main() -> bool:
    d = current()
    return d is None or d.is_main


def barrier() -> None:
    if current() is not None:
        dist.barrier()


@contextlib.contextmanager
def session(command: str = "train") -> Iterator[Dist | None]:
    """Open the process group for the duration of a command when launched by torchrun.

    Each rank uses GPU LOCAL_RANK when CUDA is present (NCCL), else the CPU (gloo). Ranks other
    than 0 log warnings only.
    """
    if not launched():
        yield None
        return
    if command not in DISTRIBUTED_COMMANDS:
        raise ValueError(
            f"spotter {command} does not run under torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']}); "
            f"commands that do: {', '.join(DISTRIBUTED_COMMANDS)}. Run it as one process."
        )
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ValueError(f"WORLD_SIZE is set but {var} is not; launch with torchrun")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # "cuda" now means this rank's GPU
    dist.init_process_group("nccl" if cuda else "gloo")
    here = current()
    assert here is not None
    if not here.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    log.info("distributed: %d processes (%s)", here.world_size, dist.get_backend())
    try:
        yield here
        dist.barrier()  # no rank tears its connections down while another still talks over them
    finally:
        # Free DDP wrappers left in reference cycles (an interrupted fit's frames) while their
        # process group still exists. Suspected cause, not proven, of a rare abort at exit under
        # gloo ("terminate called without an active exception", 2 of ~8 full test runs here).
        gc.collect()
        dist.destroy_process_group()


def all_sum(values: list[float], device: torch.device | str) -> list[float]:
    """Sum a few numbers over ranks (identity for a single process)."""
    if current() is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every rank, so that all ranks stop at the same step."""
    ok = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
    if current() is not None:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())
