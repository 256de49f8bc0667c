"""Several processes, one result: work split across ranks with ``torch.distributed``.

Launch any sharded command with ``torchrun`` (or ``accelerate launch``), e.g.::

    torchrun --nproc_per_node 2 -m interp.glitch.scan --model smollm2-135m --work scan/

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init` joins the
process group from them (gloo on CPU, NCCL on GPU) and a plain ``python`` run is rank 0 of 1, so
the same command runs one process or many. Items are split in fixed chunks (rank ``r`` takes chunks
``r, r + n, ...``); each rank writes its chunks as stage files, so a restarted run redoes only the
missing ones, and rank 0 gathers them after a barrier and writes the result. Because a chunk is
processed the same way whichever rank runs it, the result equals a one-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int = 0
    size: int = 1
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes shared results (rank 0)."""
        return self.rank == 0

    def owns(self, chunk_index: int) -> bool:
        """Whether this rank processes chunk ``chunk_index`` (chunks are dealt round-robin)."""
        return chunk_index % self.size == self.rank

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()


def init(device: str = "cpu") -> World:
    """Join the process group that ``torchrun`` describes in the environment, or run alone.

    Args:
        device: ``cpu`` uses gloo; a CUDA device uses NCCL and selects ``cuda:LOCAL_RANK``.

    Returns:
        The :class:`World` of this process.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank = int(os.environ.get("RANK", "0"))
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if not torch.distributed.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend=backend)
    return World(rank=rank, size=size, backend=backend)


def finish(world: World) -> None:
    """Leave the process group (after the last barrier)."""
    if world.size > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
