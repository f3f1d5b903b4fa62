"""Rank and world size for ``seem label`` under ``torchrun --nnodes N --nproc_per_node M`` (environment
variables ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT``), with a gloo process group for the
barrier before the merge (gloo: CPU processes, and the merge only reads files). Without torchrun: rank 0 of 1.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_env(environ=None) -> Ranks:
    """``Ranks`` from ``RANK`` / ``WORLD_SIZE`` (torchrun's); rank 0 of 1 when they are unset.

    Raises:
        ValueError: malformed values, or a rank outside ``[0, WORLD_SIZE)``.
    """
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
    except ValueError:
        raise ValueError(f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={world})")
    return Ranks(rank, world)


class ProcessGroup:
    """A gloo process group while ``world_size > 1`` (a no-op for one process); ``barrier()`` waits for every
    rank, up to ``timeout_s`` (default 24 h: ranks finish their shares at different times)."""

    def __init__(self, ranks: Ranks, timeout_s: float = 86_400.0) -> None:
        self.ranks = ranks
        self._dist = None
        if ranks.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world_size,
                                        timeout=datetime.timedelta(seconds=timeout_s))
            self._dist = dist

    def barrier(self) -> None:
        if self._dist is not None:
            self._dist.barrier()

    def close(self) -> None:
        if self._dist is not None and self._dist.is_initialized():
            self._dist.destroy_process_group()
        self._dist = None


def label_command(nproc: int = 1, python: str | None = None) -> list[str]:
    """The argv prefix that runs ``seem label`` on this machine: ``python -m seem.cli label`` for one process,
    else ``torchrun`` (``torch.distributed.run``) with ``nproc`` local processes on a free loopback port.
    Append the ``seem label`` arguments."""
    import socket
    import sys

    python = python or sys.executable
    if nproc == 1:
        return [python, "-m", "seem.cli", "label"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
            "--master_port", str(port), "-m", "seem.cli", "label"]
