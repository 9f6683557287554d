"""The runner of the staged build.

Each module of ``atlasgen.stages`` declares its stage (``STAGE = Stage(...)``, see
``atlasgen.stage``); the runner reads those declarations without importing the modules. A
stage's inputs are its slice of the config, the content hashes of the upstream artifacts it
reads, and its code identity (the source of every atlasgen module it may import, see
``atlasgen.codeid``). Their hash is the stage's key; a complete artifact under that key means the stage
has nothing to do. The site stage renders into the output folder instead of
the cache and keeps its key in the output's marker file.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlasgen import __version__
from atlasgen.cache import SITE_MARKER, ArtifactStore, hash_data, hash_tree, tree_size
from atlasgen.codeid import code_identity, package_root
from atlasgen.config import Config
from atlasgen.dist import RANK_STATES, Ranks, rank_device
from atlasgen.progress import Console, format_bytes, format_seconds
from atlasgen.slices import config_slice
from atlasgen.stage import DeclarationError, Stage, StageContext, read_declaration
from atlasgen.versions import describe, numeric_stack

SITE_STAGE = "site"  # renders last, into the output folder instead of the cache


def discover(root: Path | None = None) -> tuple[Stage, ...]:
    """Every stage's declaration, read from the modules of atlasgen.stages (nothing is imported),
    in the order they run: depth first from the site stage, each stage after the stages it reads,
    siblings in the order their reader lists them."""
    folder = (package_root() if root is None else Path(root)) / "atlasgen" / "stages"
    declared = {
        p.stem: read_declaration(p, f"atlasgen.stages.{p.stem}")
        for p in sorted(folder.glob("*.py"))
        if p.stem != "__init__"
    }
    for name, stage in declared.items():
        if stage.name != name:
            raise DeclarationError(
                f"atlasgen/stages/{name}.py declares the stage {stage.name!r}. "
                "Fix: name the stage after its module."
            )
        for dep in stage.deps:
            if dep not in declared or dep == SITE_STAGE:
                raise DeclarationError(
                    f"stage {name!r} reads {dep!r}, which is no stage. "
                    "Fix: name a module of atlasgen/stages in its deps."
                )
    if SITE_STAGE not in declared:
        raise DeclarationError(f"no atlasgen/stages/{SITE_STAGE}.py. Fix: restore the site stage.")
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name) :] + [name])
            raise DeclarationError(
                f"stages read each other in a cycle: {cycle}. Fix: remove one of the deps."
            )
        visiting.append(name)
        for dep in declared[name].deps:
            visit(dep)
        visiting.pop()
        order.append(name)

    visit(SITE_STAGE)
    unread = sorted(set(declared) - set(order))
    if unread:
        raise DeclarationError(
            f"no stage reads the artifact of stage {unread[0]!r}. Fix: add it to the deps "
            f"of the stages that read it (at least atlasgen/stages/{SITE_STAGE}.py)."
        )
    return tuple(declared[name] for name in order)


_ALL = discover()
STAGES: tuple[Stage, ...] = _ALL[:-1]  # the cached stages, in the order they run
SITE: Stage = _ALL[-1]
STAGE_NAMES = tuple(s.name for s in _ALL)


def stage_code(stage: Stage, root: Path | None = None) -> str:
    """A stage's code identity: the source of every atlasgen module its module may import."""
    return code_identity(stage.module, package_root() if root is None else Path(root))


def _site_resources_hash() -> str:
    from atlasgen.site.resources import resource_dir

    return hash_data(
        [hash_tree(resource_dir("templates"), exclude=()), hash_tree(resource_dir("static"), exclude=())]
    )


def resolve_device(cfg: Config) -> str:
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class StageState:
    name: str
    key: str | None  # None while an upstream artifact is missing
    inputs: dict | None
    cached: bool
    reason: str


@dataclass
class BuildSummary:
    seconds: dict[str, float] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    pages: int = 0
    site_files: int = 0
    site_bytes: int = 0
    notes: list[str] = field(default_factory=list)  # from the stages' build_notes.json (e.g. skipped files)
    model_input: str = ""  # what the model is fed: size, mean, std and where they come from


class Pipeline:
    """Runs the stages of one config against one cache folder and one output folder."""

    def __init__(
        self,
        cfg: Config,
        out_dir: Path | None = None,
        console: Console | None = None,
        accept_changed_features: bool = False,
        dist: Any = None,
    ):
        self.cfg = cfg
        self.dist = dist  # every rank runs build() in a distributed build; see atlasgen.dist
        self.accept_changed_features = accept_changed_features
        self.store = ArtifactStore(cfg.resolve(cfg.cache_dir))
        self.out_dir = Path(out_dir) if out_dir is not None else cfg.resolve(cfg.output)
        self.console = console or Console()

    # ---------------------------------------------------------------- inputs

    def _inputs(self, stage: Stage, upstream: dict[str, str]) -> dict:
        return {
            "stage": stage.name,
            "config": config_slice(stage, self.cfg),
            "code": stage_code(stage),
            "upstream": {d: upstream[d] for d in stage.deps},
        }

    def _site_inputs(self, upstream: dict[str, str]) -> dict:
        return {
            "stage": SITE_STAGE,
            "config": config_slice(SITE, self.cfg),
            "code": stage_code(SITE),
            "resources": _site_resources_hash(),
            "atlasgen": __version__,
            "versions": numeric_stack(),  # kept in manifest.json
            "upstream": {d: upstream[d] for d in SITE.deps},
        }

    def _site_key_on_disk(self) -> str | None:
        marker = self.out_dir / SITE_MARKER
        if not marker.is_file():
            return None
        for line in marker.read_text().splitlines():
            if line.startswith("key: "):
                return line[5:].strip()
        return None

    # ---------------------------------------------------------------- status

    def states(self) -> list[StageState]:
        """Every stage, cached or stale, and why, without running anything."""
        states: list[StageState] = []
        hashes: dict[str, str] = {}
        for stage in STAGES:
            missing = [d for d in stage.deps if d not in hashes]
            if missing:
                states.append(StageState(stage.name, None, None, False, f"waits on {', '.join(missing)}"))
                continue
            inputs = self._inputs(stage, hashes)
            key = hash_data(inputs)[:20]
            if self.store.is_complete(stage.name, key):
                hashes[stage.name] = self.store.meta(stage.name, key)["content_hash"]
                states.append(StageState(stage.name, key, inputs, True, ""))
            else:
                reason = self._why_stale(stage.name, inputs)
                if stage.resumable and self.store.partial(stage.name, key).is_dir():  # a killed run's shards
                    reason = "partly built, resumes" + ("" if reason == "never built" else f" ({reason})")
                states.append(StageState(stage.name, key, inputs, False, reason))
        if len(hashes) == len(STAGES):
            inputs = self._site_inputs(hashes)
            key = hash_data(inputs)[:20]
            if self._site_key_on_disk() == key:
                states.append(StageState(SITE_STAGE, key, inputs, True, f"up to date in {self.out_dir}"))
            else:
                states.append(StageState(SITE_STAGE, key, inputs, False, self._why_stale(SITE_STAGE, inputs)))
        else:
            states.append(StageState(SITE_STAGE, None, None, False, "waits on upstream stages"))
        return states

    def _why_stale(self, name: str, inputs: dict) -> str:
        latest = self.store.latest(name)
        if latest is None:
            return "never built"
        old = latest["inputs"]
        reasons = []
        reasons += [f"{k} changed" for k in _diff_paths(old.get("config"), inputs.get("config"), "config")]
        if old.get("code") != inputs.get("code"):
            reasons.append("code changed")
        if old.get("resources") != inputs.get("resources"):
            reasons.append("templates or static files changed")
        for dep, h in inputs.get("upstream", {}).items():
            if old.get("upstream", {}).get(dep) != h:
                reasons.append(f"upstream {dep} changed")
        return "; ".join(reasons[:6]) or "artifact missing"

    # ---------------------------------------------------------------- build

    def build(self) -> BuildSummary:
        from atlasgen.preflight import preflight

        found = preflight(self.cfg, self.out_dir)  # raises before the cache is touched
        for warning in found.warnings:
            self.console.info(f"warning: {warning}")
        summary = BuildSummary(model_input=found.model_input)
        d = self.dist
        if d is None or d.main:
            self.store.ensure()
        if d is not None:
            d.barrier()
        device = None
        hashes: dict[str, str] = {}
        folders: dict[str, Path] = {}
        for stage in STAGES:
            inputs = self._inputs(stage, hashes)
            key = hash_data(inputs)[:20]
            if self.store.is_complete(stage.name, key):
                self.console.detail(f"{stage.name}: cached ({key})")
                meta = self.store.meta(stage.name, key)
            else:
                if device is None:
                    device = resolve_device(self.cfg)
                    device = rank_device(device, d)
                meta = self._run_stage(stage, key, inputs, device, summary, folders)
            hashes[stage.name] = meta["content_hash"]
            folders[stage.name] = self.store.final(stage.name, key)
            notes = folders[stage.name] / "build_notes.json"
            if notes.is_file():
                summary.notes += json.loads(notes.read_text(encoding="utf-8"))
        if d is None or d.main:  # only rank 0 renders the site and prunes the cache
            self._build_site(hashes, folders, summary)
            for stage in STAGES:  # keep one artifact per stage: the one this build used
                self.store.prune(stage.name, folders[stage.name].name)
        if d is not None:
            d.barrier()
        return summary

    def _run_stage(
        self,
        stage: Stage,
        key: str,
        inputs: dict,
        device: str,
        summary: BuildSummary,
        folders: dict[str, Path],
    ) -> dict:
        partial = self.store.partial(stage.name, key)
        resumed = partial.exists() and stage.resumable
        d = self.dist
        main = d is None or d.main
        if d is not None:
            d.barrier()  # every rank has seen the partial folder as it was before rank 0 touches it
        if main:
            if partial.exists() and not stage.resumable:
                shutil.rmtree(partial)
            partial.mkdir(parents=True, exist_ok=True)
        module = importlib.import_module(stage.module)
        spread = d is not None and stage.distributed
        how = f" (on {d.world} ranks)" if spread else (" (on rank 0)" if d is not None else "")
        self.console.info(f"{stage.name}: {stage.what}" + (" (resuming)" if resumed else "") + how)
        if d is not None:
            d.barrier()
        ctx = StageContext(
            self.cfg,
            partial,
            {dep: folders[dep] for dep in stage.deps},
            self.console,
            device,
            ranks=Ranks(d if spread else None, partial / RANK_STATES),
        )
        start = time.perf_counter()
        if main or spread:
            module.run(ctx)
        if d is not None:
            d.barrier()  # every rank's shards are written
        if main:
            if (partial / RANK_STATES).exists():  # the ranks' resumable states are no part of the artifact
                shutil.rmtree(partial / RANK_STATES)
            meta = self.store.commit(stage.name, key, {"inputs": inputs, "atlasgen": __version__})
        if d is not None:
            d.barrier()
            meta = self.store.meta(stage.name, key)
        summary.seconds[stage.name] = time.perf_counter() - start
        summary.ran.append(stage.name)
        return meta

    def _build_site(self, hashes: dict[str, str], folders: dict[str, Path], summary: BuildSummary) -> None:
        inputs = self._site_inputs(hashes)
        key = hash_data(inputs)[:20]
        if self._site_key_on_disk() == key and (self.out_dir / "index.html").is_file():
            self.console.detail(f"site: up to date in {self.out_dir}")
            summary.site_files, summary.site_bytes = tree_size(self.out_dir)
            return
        site_stage = importlib.import_module(SITE.module)
        self.console.info(f"site: rendering into {self.out_dir}")
        start = time.perf_counter()
        out = self.out_dir
        from atlasgen.site.keep import carry_over, files_under, is_kept, kept_patterns, marker_text

        kept = kept_patterns(self.cfg.site.keep)
        if (
            out.exists()
            and not (out / SITE_MARKER).is_file()
            and any(not is_kept(p.name, kept) for p in out.iterdir())
        ):
            from atlasgen.config import ConfigError

            raise ConfigError(
                [
                    f"output: {str(out)!r} is a non-empty folder that atlasgen did not make. Fix: "
                    "choose an empty or new folder with -o, or empty it yourself."
                ]
            )
        from atlasgen.site import publish

        if not self.accept_changed_features:
            publish.check_feature_ids(
                out,
                self.cfg.model.name,
                publish.sae_hashes(folders["sae"], [layer.name for layer in self.cfg.layers]),
            )
        # Stops before rendering a site over its budget; says whether the try page's image copies fit.
        copies = site_stage.check_projection(self.cfg, folders, self.console)
        staging = out.with_name(out.name + ".partial")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        rendered = site_stage.render_into(self.cfg, folders, staging, self.console, copies)
        try:
            publish.check_size_budget(staging, self.cfg.site.size_budget_mb)
        except publish.SizeBudgetError as exc:
            exc.errors.append(f"The rendered site was left in {staging} for inspection; {out} is unchanged.")
            raise
        marker = staging / SITE_MARKER
        marker.write_text(marker_text(key, files_under(staging)), encoding="utf-8")
        if out.exists():  # the user's files (CNAME, notes, site.keep) move into the new site
            carry_over(out, staging, kept)
        # Swap the finished site into place: the old one stays whole until the new one is.
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        if old.exists():
            shutil.rmtree(old)
        from atlasgen.cache import atomic_write_json

        atomic_write_json(self.store.root / SITE_STAGE / "latest.json", {"key": key, "inputs": inputs})
        summary.seconds[SITE_STAGE] = time.perf_counter() - start
        summary.ran.append(SITE_STAGE)
        summary.pages = rendered.pages
        summary.site_files = rendered.files + 1  # and the marker
        summary.site_bytes = rendered.bytes + (out / SITE_MARKER).stat().st_size


def _diff_paths(old: Any, new: Any, path: str) -> list[str]:
    """Key paths whose values differ between two plain-data trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff_paths(old.get(k), new.get(k), f"{path}.{k}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += _diff_paths(a, b, f"{path}[{i}]")
        return out
    return [] if old == new else [path.removeprefix("config.")]


def format_summary(summary: BuildSummary, out_dir: Path, total_seconds: float) -> str:
    lines = ["", "build summary"]
    for name in STAGE_NAMES:
        t = summary.seconds.get(name)
        lines.append(f"  {name:<12} {format_seconds(t) if t is not None else 'cached':>8}")
    lines.append(f"  {'total':<12} {format_seconds(total_seconds):>8}")
    pages = f"{summary.pages} pages written" if SITE_STAGE in summary.ran else "site unchanged"
    lines.append(
        f"  {pages}; site {summary.site_files} files, {format_bytes(summary.site_bytes)} in {out_dir}"
    )
    if summary.model_input:
        lines.append(f"  model {summary.model_input}")
    lines.append(f"  versions {describe()}")
    lines += [f"  {line}" for line in summary.notes]
    return "\n".join(lines)
