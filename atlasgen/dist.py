"""Distributed builds: ranks, the process group and the collectives the stages use.

``torchrun --nproc-per-node N -m atlasgen build -c CONFIG`` starts N copies of
the build; torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the
rendezvous address) in each one's environment. :func:`init_from_env` turns
that into a :class:`Dist` and initialises ``torch.distributed``: the ``gloo``
backend on CPU, ``nccl`` on CUDA (each rank then uses ``cuda:LOCAL_RANK``).
With ``WORLD_SIZE`` unset or 1 it returns None and nothing here is used: a
single-process build runs exactly the code it always ran.

Every rank runs the same pipeline on the same (shared) cache folder. A stage
whose module sets ``DISTRIBUTED = True`` runs on every rank with
``ctx.dist`` set and splits its work by rank; any other stage runs on rank 0
while the others wait at a barrier. Rank 0 alone commits artifacts (the
final rename) and renders the site. See docs/scaling.md.

The merges go through a CPU (gloo) group even when the default group is
NCCL: they move small CPU tensors and Python objects between steps, while the
SAE's gradients (atlasgen.sae) all-reduce on the default group, on the GPU.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch

# Ranks wait at barriers while rank 0 runs a whole stage (e.g. trains the demo model): a generous
# default, overridable for very long stages.
TIMEOUT_ENV = "ATLASGEN_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 6 * 3600


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@dataclass
class Dist:
    """This process's place in a distributed build, and the collectives between the ranks."""

    rank: int
    world: int
    local_rank: int
    backend: str
    cpu_group: Any = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, i: int) -> bool:
        """Whether work item ``i`` (a shard, a batch, a chunk) belongs to this rank: round-robin."""
        return i % self.world == self.rank

    def share(self, n: int) -> int:
        """How many of ``n`` round-robin items are this rank's."""
        return len(range(self.rank, n, self.world))

    def barrier(self) -> None:
        import torch.distributed as td

        td.barrier(group=self.cpu_group)

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a same-shaped CPU tensor, in rank order."""
        import torch.distributed as td

        tensor = tensor.detach().cpu().contiguous()
        out = [torch.empty_like(tensor) for _ in range(self.world)]
        td.all_gather(out, tensor, group=self.cpu_group)
        return out

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj, group=self.cpu_group)
        return out

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        """Every rank's ``obj`` on rank ``dst`` (in rank order); None on the other ranks."""
        import torch.distributed as td

        out: list[Any] | None = [None] * self.world if self.rank == dst else None
        td.gather_object(obj, out, dst=dst, group=self.cpu_group)
        return out

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of a CPU tensor over the ranks (integers: exact)."""
        import torch.distributed as td

        t = tensor.detach().cpu().clone().contiguous()
        td.all_reduce(t, op=td.ReduceOp.SUM, group=self.cpu_group)
        return t.to(tensor.device)


def init_from_env(device: str = "cpu") -> Dist | None:
    """Join the process group torchrun described in the environment; None for a plain build.

    ``device`` is the configured device ("cpu", "cuda", "cuda:0", "auto"): CUDA picks NCCL."""
    world = env_world_size()
    if world <= 1:
        return None
    import torch.distributed as td

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not td.is_initialized():
        td.init_process_group(backend=backend, timeout=timeout)
    cpu_group = td.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    return Dist(rank=rank, world=world, local_rank=local_rank, backend=backend, cpu_group=cpu_group)


def shutdown(d: Dist | None) -> None:
    if d is None:
        return
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()


def rank_device(device: str, d: Dist | None) -> str:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a distributed build."""
    if d is not None and device == "cuda":
        return f"cuda:{d.local_rank}"
    return device
