"""Distributed builds: the ranks, the process group, and what a stage sees of them (``Ranks``).

``torchrun --nproc-per-node N -m atlasgen build -c CONFIG`` starts N copies of
the build; torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the
rendezvous address) in each one's environment. :func:`init_from_env` turns
that into a :class:`Dist` and initialises ``torch.distributed``: the ``gloo``
backend on CPU, ``nccl`` on CUDA (each rank then uses ``cuda:LOCAL_RANK``).
With ``WORLD_SIZE`` unset or 1 it returns None: a single-process build.

Every rank runs the same pipeline on the same (shared) cache folder. A stage
declared ``distributed=True`` runs on every rank; any other stage runs on rank 0
while the others wait. Rank 0 alone commits artifacts (the final rename) and
renders the site. The runner (``atlasgen.pipeline``) owns the process group;
a stage sees the ranks only through ``ctx.ranks``, a :class:`Ranks`:

* ``ranks.share(items)`` / ``ranks.mine(i)``: this rank's items (round-robin);
* ``ranks.split(items, work)``: ``work(this rank's items)``, returning once every rank has done its own;
* ``ranks.merge(part, combine)``: ``combine(every rank's part)`` on rank 0 (``everywhere=True``: on
  every rank); ``ranks.from_main(obj)``: rank 0's ``obj`` on every rank;
* ``ranks.main``: rank 0 only;
* ``ranks.keep(name, compute)``: a rank's resumable state, computed once and kept across a killed run.

In a single-process build, and for a stage that runs on rank 0 alone, ``ctx.ranks`` is the one rank
of a world of one: ``share`` keeps every item, ``merge`` returns the part it is given, ``keep``
computes. A stage has one code path either way. See docs/scaling.md.

The merges go through a CPU (gloo) group even when the default group is
NCCL: they move small CPU tensors and Python objects between steps, while the
SAE's gradients (atlasgen.sae) all-reduce on the default group, on the GPU.
"""

from __future__ import annotations

import datetime
import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Ranks wait at barriers while rank 0 runs a whole stage (e.g. trains the demo model): a generous
# default, overridable for very long stages.
TIMEOUT_ENV = "ATLASGEN_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 6 * 3600

# The folder, inside a stage's .partial folder, of the ranks' resumable states (Ranks.keep). The
# runner deletes it before the artifact is committed: it is never part of an artifact.
RANK_STATES = "_ranks"


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

    def barrier(self) -> None:
        import torch.distributed as td

        td.barrier(group=self.cpu_group)

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

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=src, group=self.cpu_group)
        return box[0]


class Ranks:
    """A stage's share of the work and the merges between the ranks that run it (``ctx.ranks``).

    ``dist``: the process group of a distributed build (None: one process, a world of one).
    ``states``: the folder of the ranks' resumable states (:meth:`keep`)."""

    def __init__(self, dist: Dist | None = None, states: Path | None = None):
        self.dist = dist
        self.rank = 0 if dist is None else dist.rank
        self.world = 1 if dist is None else dist.world
        self.states = None if states is None else Path(states)

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the rank that merges, writes what is written once, and commits."""
        return self.rank == 0

    def mine(self, i: int) -> bool:
        """Whether work item ``i`` (a chunk, a batch, a shard) is this rank's: round-robin, so a pass
        over batches (``Dataset.batches(..., select=ranks.mine)``) makes the batches one process makes."""
        return i % self.world == self.rank

    def share(self, items: Iterable[T]) -> list[T]:
        """This rank's items of ``items``: those at the positions :meth:`mine` picks, in order."""
        return [item for i, item in enumerate(items) if self.mine(i)]

    def split(self, items: Iterable[T], work: Callable[[list[T]], Any]) -> Any:
        """``work(this rank's items)``; returns (what ``work`` returned) once every rank has done its
        own, so that what the items wrote is there for whatever comes next, on any rank."""
        done = work(self.share(items))
        self._wait()
        return done

    def merge(self, part: T, combine: Callable[[list[T]], T], everywhere: bool = False) -> T | None:
        """``combine(parts)`` of every rank's ``part`` (in rank order) on rank 0, None on the others;
        with ``everywhere`` on every rank. In a world of one, ``part`` itself (``combine`` is not
        called): ``combine`` must return what a part is, the part of all the ranks' work together."""
        if self.dist is None:
            return part
        if everywhere:
            return combine(self.dist.all_gather_object(part))
        parts = self.dist.gather_object(part)
        return None if parts is None else combine(parts)

    def from_main(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (what the other ranks pass is ignored)."""
        return obj if self.dist is None else self.dist.broadcast_object(obj)

    def keep(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, kept across a killed run: in a distributed build each rank saves what it
        computed under ``<states>/<name>/rank<r>-of-<N>.pt`` (written atomically) and a rerun on as
        many ranks loads it instead of computing it again. The runner deletes the states before the
        artifact is committed. One process keeps nothing (it has no other ranks to wait for)."""
        if self.dist is None or self.states is None:
            return compute()
        import torch

        from atlasgen.cache import atomic_write_bytes

        path = self.states / name / f"rank{self.rank:05d}-of-{self.world:05d}.pt"
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=False)
        value = compute()
        buffer = io.BytesIO()
        torch.save(value, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return value

    def _wait(self) -> None:
        if self.dist is not None:
            self.dist.barrier()


def init_from_env(device: str = "cpu") -> Dist | None:
    """Join the process group torchrun described in the environment; None for a plain build.

    ``device`` is the configured device ("cpu", "cuda", "cuda:0", "auto"): CUDA picks NCCL."""
    world = env_world_size()
    if world <= 1:
        return None
    import torch
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
