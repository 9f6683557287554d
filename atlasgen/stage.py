"""What a stage is: its declaration (``Stage``) and what its ``run`` gets (``StageContext``).

Every module of ``atlasgen.stages`` declares itself at the top with one literal call::

    STAGE = Stage("examples", deps=("dataset", "model", "sae"), config=("layers", "examples"),
                  what="dataset examples", resumable=True, distributed=True)

and defines ``run(ctx: StageContext)``. The runner (``atlasgen.pipeline``) reads the declaration
without importing the module (so ``atlasgen status`` never imports torch): its arguments must be
literals. ``config`` names the parts of the config that feed the stage's key: a dotted path into
the config (``"examples"``, ``"dataset.image_size"``) or one of the derived slices of
``atlasgen.slices`` (content hashes of weight files and the like). See docs/pipeline.md.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from atlasgen.dist import Ranks

if TYPE_CHECKING:  # annotations only: never imported, so no part of the stages' code identity
    from atlasgen.config import Config
    from atlasgen.progress import Console


@dataclass(frozen=True)
class Stage:
    """A stage's declaration: its name, the stages whose artifacts it reads, its config slice."""

    name: str
    deps: tuple[str, ...] = ()
    config: tuple[str, ...] = ()  # config paths or SLICES names; their values are part of the key
    what: str = ""  # one line for the build log
    resumable: bool = False  # keeps its .partial folder across a killed run (shards written atomically)
    distributed: bool = False  # every rank runs it in a distributed build (else rank 0 alone; see ctx.ranks)
    module: str = ""  # filled in by the runner: the module whose run(ctx) computes the artifact


@dataclass
class StageContext:
    """What a stage's ``run`` gets: the config, its output folder, its inputs' folders and the ranks
    that run it (``ranks``: this rank's share of the work and the merges, :class:`atlasgen.dist.Ranks`;
    one rank unless the stage is distributed and the build runs under torchrun)."""

    cfg: Config
    out: Path
    inputs: dict[str, Path]
    console: Console
    device: str
    ranks: Ranks = field(default_factory=Ranks)

    def progress(self, total: int, desc: str):
        return self.console.progress(total, desc)

    def skip(self, stage: str, reason: str) -> None:
        """End the stage without its artifact: ``skipped.json`` with the reason (read by the site), a
        line in the build summary and one in the log."""
        from atlasgen.cache import atomic_write_json

        atomic_write_json(self.out / "skipped.json", {"reason": reason})
        atomic_write_json(self.out / "build_notes.json", [f"{stage}: skipped: {reason}"])
        self.console.info(f"  skipped: {reason}")


# ---------------------------------------------------------------- reading a declaration


class DeclarationError(Exception):
    pass


def read_declaration(path: Path, module: str) -> Stage:
    """The ``STAGE = Stage(...)`` of a stage module, read from its source without importing it."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "STAGE"
        ):
            call = node.value
            if not (
                isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Stage"
            ):
                break
            try:
                args = [ast.literal_eval(a) for a in call.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            except ValueError:
                raise DeclarationError(
                    f"{path}: STAGE = Stage(...) takes literal arguments only "
                    "(strings, tuples, booleans), so the runner can read it "
                    "without importing the module."
                ) from None
            stage = Stage(*args, **kwargs)
            return Stage(
                **{
                    **stage.__dict__,
                    "deps": tuple(stage.deps),
                    "config": tuple(stage.config),
                    "module": module,
                }
            )
    raise DeclarationError(
        f"{path}: no top-level `STAGE = Stage(...)`. Fix: declare the stage (see docs/pipeline.md)."
    )
