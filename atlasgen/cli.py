"""The command line: build, status, serve, clean, layers, check, publish, export-sae, annotate."""

from __future__ import annotations

import functools
import http.server
import shutil
import socketserver
import sys
import time
from pathlib import Path

import click

from atlasgen import __version__
from atlasgen.cache import CACHE_MARKER, SITE_MARKER
from atlasgen.config import ConfigError, load_config
from atlasgen.errors import AtlasgenError
from atlasgen.progress import Console, stop_on_interrupt

CONFIG_HELP = "Config file (default: site_config.yaml in the current folder)."


def _console(quiet: bool, verbose: bool) -> Console:
    return Console(0 if quiet else (2 if verbose else 1))


def _fail(errors: list[str], headline: str = "config error") -> None:
    click.echo(f"atlasgen: {headline}" + ("s:" if len(errors) > 1 else ":"), err=True)
    for line in errors:
        click.echo(f"  {line}", err=True)
    sys.exit(2)


def _load(config: str):
    try:
        return load_config(config)
    except ConfigError as exc:
        _fail(exc.errors)


def _output(cfg, output: str | None) -> Path:
    if output is None:
        return cfg.resolve(cfg.output)
    out = Path(output)
    if out.exists() and not out.is_dir():
        _fail(
            [
                f"-o: {str(out)!r} is a file, not a folder. Fix: choose another output folder or "
                "move the file away."
            ]
        )
    return out


common_output = click.option(
    "-o", "--output", default=None, help="Site folder (default: `output` from the config, _site/)."
)
common_config = click.option(
    "-c", "--config", default="site_config.yaml", show_default=True, help=CONFIG_HELP
)
quiet_opt = click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
verbose_opt = click.option("-v", "--verbose", is_flag=True, help="Print details of every step.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atlasgen")
def main() -> None:
    """atlasgen: build a static, Microscope-like atlas of a vision model's SAE features."""


@main.command()
@common_config
@common_output
@quiet_opt
@verbose_opt
@click.option(
    "--accept-changed-features",
    is_flag=True,
    help="Overwrite a site built from a different SAE, so that its feature URLs change meaning.",
)
def build(config: str, output: str | None, quiet: bool, verbose: bool, accept_changed_features: bool) -> None:
    """Run every stage (cached ones are skipped) and write the site."""
    from atlasgen.pipeline import Pipeline, format_summary

    cfg = _load(config)
    out = _output(cfg, output)
    console = _console(quiet, verbose)
    start = time.perf_counter()
    stop_on_interrupt()
    # Under torchrun (WORLD_SIZE > 1) every rank runs this; ranks other than 0 print errors only.
    from atlasgen.dist import env_world_size, init_from_env, shutdown

    dist = None
    try:
        if env_world_size() > 1:
            dist = init_from_env(cfg.device)
            if not dist.main:
                console = Console(0)
        summary = Pipeline(
            cfg, out, console, accept_changed_features=accept_changed_features, dist=dist
        ).build()
    except AtlasgenError as exc:
        if verbose and exc.__cause__ is not None:  # e.g. the exception a model factory raised
            import traceback

            click.echo("".join(traceback.format_exception(exc.__cause__)), err=True, nl=False)
        _fail(exc.errors, exc.headline)
    except KeyboardInterrupt:
        click.echo(
            "\natlasgen: interrupted; completed stages and shards are kept. Run the same command to resume.",
            err=True,
        )
        sys.exit(130)
    finally:
        shutdown(dist)
    console.info(format_summary(summary, out, time.perf_counter() - start))


@main.command()
@common_config
@common_output
@quiet_opt
@verbose_opt
def status(config: str, output: str | None, quiet: bool, verbose: bool) -> None:
    """List the stages, cached or stale, and why (-q: only the stale ones; -v: with each stage's key)."""
    from atlasgen.pipeline import Pipeline

    cfg = _load(config)
    pipeline = Pipeline(cfg, _output(cfg, output))
    for state in pipeline.states():
        if quiet and state.cached:
            continue
        mark = "cached" if state.cached else "stale "
        key = f"  [{state.key or 'key not known yet'}]" if verbose else ""
        click.echo(f"{state.name:<12} {mark}  {state.reason}{key}".rstrip())


@main.command()
@common_config
@common_output
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@quiet_opt
def serve(config: str, output: str | None, port: int, quiet: bool) -> None:
    """Preview the site over HTTP on 127.0.0.1 (-q: no line per request)."""
    if output:
        out = Path(output)
    else:
        cfg = _load(config)
        out = cfg.resolve(cfg.output)
    if not (out / "index.html").is_file():
        click.echo(f"atlasgen: no site in {out}. Run `atlasgen build` first (or pass -o FOLDER).", err=True)
        sys.exit(2)
    handler = functools.partial(_SilentHandler if quiet else _QuietHandler, directory=str(out))
    socketserver.TCPServer.allow_reuse_address = True
    try:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        click.echo(
            f"atlasgen: cannot listen on 127.0.0.1:{port}: {exc.strerror}. Fix: pass another --port.",
            err=True,
        )
        sys.exit(2)
    click.echo(f"Serving {out} at http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):  # one short line per request
        sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")


class _SilentHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


@main.command()
@common_config
@common_output
@click.option(
    "--cache/--no-cache",
    "with_cache",
    default=True,
    show_default=True,
    help="Also remove the artifact cache.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
def clean(config: str, output: str | None, with_cache: bool, quiet: bool) -> None:
    """Remove what atlasgen made: the files it wrote into the site folder (the user's files there stay,
    and are listed) and the cache (only folders it marked)."""
    cfg = _load(config)
    targets = [(_output(cfg, output), SITE_MARKER)]
    if with_cache:
        targets.append((cfg.resolve(cfg.cache_dir), CACHE_MARKER))
    refused = False
    for folder, marker in targets:
        if not folder.exists():
            continue
        if not (folder / marker).is_file():
            click.echo(
                f"atlasgen: refusing to delete {folder}: it has no {marker} marker, so atlasgen "
                "did not make it.",
                err=True,
            )
            refused = True
            continue
        if marker == SITE_MARKER:  # only the files the build wrote; the user's stay (docs/publishing.md)
            from atlasgen.site.keep import clean_site, kept_patterns

            kept = clean_site(folder, kept_patterns(cfg.site.keep))
            if not quiet:
                click.echo(
                    f"removed {folder}"
                    if not kept
                    else f"removed atlasgen's files from {folder}; kept {len(kept)} file(s) it did not "
                    "write: " + ", ".join(kept[:10]) + (", ..." if len(kept) > 10 else "")
                )
            continue
        shutil.rmtree(folder)
        if not quiet:
            click.echo(f"removed {folder}")
    if refused:
        sys.exit(2)


@main.command("import-ratings")
@common_config
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@quiet_opt
def import_ratings(config: str, files: tuple[Path, ...], quiet: bool) -> None:
    """Merge rating files exported by the survey pages (JSON or CSV) into the ratings folder the next build
    reads.

    Every file is checked first; if any is malformed nothing is written. A rater's later answer
    to the same feature replaces the earlier one; each imported file is also kept as it was.
    """
    from atlasgen.ratings import import_files

    cfg = _load(config)
    try:
        counts = import_files(cfg, list(files))
    except AtlasgenError as exc:
        _fail(exc.errors, exc.headline)
    if not quiet:
        click.echo(
            f"imported {counts['files']} file(s): {counts['added']} new, {counts['replaced']} updated, "
            f"{counts['kept']} unchanged; {counts['total']} ratings from {counts['raters']} rater(s) in "
            f"{counts['path']}. Run `atlasgen build` to show them."
        )


def output_kind(cfg, model, output, n_classes: int) -> str:
    """What the model returns, as `atlasgen layers` reports it: an embedding, or class logits with the
    head they come from and where its size came from."""
    from atlasgen.models import ZERO_SHOT_HEAD, classifier_head

    if cfg.model.head == "none":
        return "an embedding (model.head: none: no classes)"
    if output.dim() != 2:
        return "not (batch, classes) logits: set model.head: none"
    if getattr(model, "atlas_head", None) == ZERO_SHOT_HEAD:
        return f"class logits of the zero-shot head: one per dataset class ({n_classes})"
    try:
        head = classifier_head(model)
    except AtlasgenError:
        return "class logits (no nn.Linear head found)"
    name = next(n for n, m in model.named_modules() if m is head)
    sized = (
        f"sized to the dataset's {n_classes} classes"
        if getattr(model, "atlas_sized_head", False)
        else "the model's own"
    )
    return f"class logits from {name!r} ({head.in_features} -> {head.out_features}, {sized})"


@main.command()
@common_config
def layers(config: str) -> None:
    """List the layers of the configured model that can be studied, with their output shapes
    and kinds (image map, tokens, vector, other), and the model's output."""
    import torch

    from atlasgen.demo.dataset import CLASSES
    from atlasgen.models import all_layer_shapes, build_model
    from atlasgen.preflight import dataset_classes
    from atlasgen.zoo import layer_names

    cfg = _load(config)
    # The dataset's classes when they can be counted (a random-init head gets one output each).
    n_classes = len(dataset_classes(cfg, [], [])[0]) or len(CLASSES)
    try:
        # Shapes do not depend on the weights: a random initialisation needs no download.
        model = build_model(cfg.model, n_classes=n_classes)
    except AtlasgenError as exc:
        _fail(exc.errors, exc.headline)
    known = layer_names(cfg.model.source)
    with torch.no_grad():
        shapes = all_layer_shapes(model.eval(), cfg.dataset.image_size)
        output = model(torch.zeros(1, 3, cfg.dataset.image_size, cfg.dataset.image_size))
    if known is not None:  # the sources atlasgen knows list their studiable layers only
        shapes = [(n, s, k) for n, s, k in shapes if n in set(known)]
    hints = {"tokens": "  (pick tokens: patches, class or mean)", "other": "  (not a map of the image)"}
    for name, shape, kind in shapes:
        click.echo(f"{name:<24} {' x '.join(map(str, shape)):<16} {kind}{hints.get(kind, '')}")
    if isinstance(output, torch.Tensor):
        click.echo(
            f"{'(output)':<24} {' x '.join(map(str, output.shape[1:])):<16} "
            f"{output_kind(cfg, model, output, n_classes)}"
        )


@main.command()
@common_config
@click.argument("unit")
@click.option("--edit", is_flag=True, help="Open the file in $VISUAL or $EDITOR afterwards.")
def annotate(config: str, unit: str, edit: bool) -> None:
    """Create the annotation file of UNIT (e.g. mixed5b/f/32) with the unit's current facts as comments,
    or name it when it exists. Needs a built atlas: the facts come from the cached artifacts."""
    import os
    import subprocess

    from atlasgen.annotations import annotations_dir, new_file_text, parse_unit

    cfg = _load(config)
    names = [layer.name for layer in cfg.layers]
    try:
        layer, kind, i = parse_unit(unit, cfg.model.name, names)
    except ValueError as exc:
        _fail([f"UNIT: {exc}"], "usage error")
    folder = annotations_dir(cfg) or cfg.resolve("annotations")
    path = folder / layer / kind / f"{i}.md"
    code = f"{layer}/{kind}/{i}"
    if path.is_file():
        click.echo(f"{path} exists (the annotation of {code})")
    else:
        try:
            facts = _unit_facts(cfg, layer, kind, i)
        except AtlasgenError as exc:
            _fail(exc.errors, exc.headline)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_file_text(code, facts), encoding="utf-8")
        click.echo(f"wrote {path} (the annotation of {code}); `atlasgen build` puts it on the site")
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if edit and editor:
        subprocess.call([*editor.split(), str(path)])


def _unit_facts(cfg, layer: str, kind: str, i: int) -> list[str]:
    """Lines of facts of one unit, from the cached artifacts of the last build."""
    from atlasgen import unitlabels
    from atlasgen.pipeline import Pipeline
    from atlasgen.site.artifacts import load_artifacts
    from atlasgen.site.fmt import fmt_num, fmt_pct

    pipeline = Pipeline(cfg)
    states = [s for s in pipeline.states() if s.name != "site"]
    stale = [s.name for s in states if not s.cached]
    if stale:
        raise AtlasgenError(
            [f"the stages {', '.join(stale)} are not built for this config. Fix: run `atlasgen build` first."]
        )
    folders = {s.name: pipeline.store.final(s.name, s.key) for s in states}
    arts = load_artifacts(folders, [layer.name for layer in cfg.layers])
    L = next(x for x in arts.layers if x.name == layer)
    ex = L.features if kind == "f" else L.neurons
    if i >= ex.n_units:
        what = "features" if kind == "f" else "neurons"
        raise AtlasgenError(
            [
                f"UNIT: {layer}/{kind}/{i} is not a unit: {layer} has {ex.n_units} {what} (ids 0 "
                f"to {ex.n_units - 1})."
            ]
        )
    auto = L.feature_label(i) if kind == "f" else ""
    names = arts.dataset.class_names
    top = ", ".join(
        f"{names[int(c)]} {fmt_pct(w)}"
        for c, w in zip(ex.top_classes[i], ex.top_class_weights[i])
        if int(c) >= 0
    )
    facts = [
        f"automatic label: {auto or '(none)'}",
        f"density: fires on {fmt_pct(ex.density[i])} of images",
        f"max activation: {fmt_num(ex.max_act[i])}; mean activation: {fmt_num(ex.mean_act[i])}",
        f"top classes of its top images: {top or '(none)'}",
        f"flags: {', '.join(unitlabels.FLAG_NAMES[f] for f in unitlabels.unit_flags(ex, i)) or '(none)'}",
        f"page: {cfg.model.name}/{layer}/{kind}/{i}/index.html",
    ]
    return facts


@main.command("export-sae")
@click.argument("source", metavar="SITE_OR_CACHE", type=click.Path(path_type=Path))
@click.argument("layer")
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--dtype",
    type=click.Choice(["float16", "bfloat16", "float32"]),
    default=None,
    help="Dtype of the weights (from a cache; default float16, as site.sae_dtype). A site gives its own.",
)
@quiet_opt
def export_sae(source: Path, layer: str, out: Path, dtype: str | None, quiet: bool) -> None:
    """Write LAYER's SAE as a SAELens folder (cfg.json + sae_weights.safetensors + metrics.json) into OUT,
    from a built site folder (the files it published) or a build cache (.atlasgen/). The folder loads
    with sae_lens.SAE.load_from_disk(OUT) and as an atlasgen layer's sae.weights."""
    from atlasgen.site.weights import export_sae as write

    try:
        names = write(source, layer, out, dtype)
    except AtlasgenError as exc:
        _fail(exc.errors, exc.headline)
    if not quiet:
        click.echo(f"wrote {', '.join(names)} to {out}")


@main.command()
@click.argument("outdir", required=False, type=click.Path(file_okay=False))
@click.option(
    "-c",
    "--config",
    default=None,
    help="Config whose output folder and size budget to use (default: site_config.yaml if present).",
)
@click.option(
    "--budget-mb",
    type=float,
    default=None,
    help="Size budget in MB (default: site.size_budget_mb of the config, else 900).",
)
@quiet_opt
def check(outdir: str | None, config: str | None, budget_mb: float | None, quiet: bool) -> None:
    """Validate a built site: links and anchors resolve, no root-relative or external URLs,
    no JavaScript that breaks on file://, the size budget, manifest consistency. Exit 1 on problems."""
    from atlasgen.site.check import check_site

    cfg = None
    if config is not None or (outdir is None or budget_mb is None) and Path("site_config.yaml").is_file():
        cfg = _load(config or "site_config.yaml")
    site = Path(outdir) if outdir else (cfg.resolve(cfg.output) if cfg else Path("_site"))
    budget = budget_mb if budget_mb is not None else (cfg.site.size_budget_mb if cfg else 900.0)
    problems = check_site(site, budget)
    _citation_warnings(site)
    if problems:
        click.echo(
            f"atlasgen check: {len(problems)} problem{'s' if len(problems) > 1 else ''} in {site}:", err=True
        )
        for line in problems:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    if not quiet:
        click.echo(f"atlasgen check: {site} passed (links, anchors, URLs, file:// scripts, size, manifest).")


def _citation_warnings(site: Path) -> None:
    """Print (to stderr) what keeps the site in ``site`` from being cited as it is; never fails."""
    from atlasgen.site.publish import citation_warnings

    for line in citation_warnings(site):
        click.echo(f"warning: {line}", err=True)


@main.command()
@click.option(
    "--workflow",
    "repo",
    required=True,
    type=click.Path(file_okay=False),
    help="Root of the git repository to write .github/workflows/atlas-pages.yml into.",
)
@click.option(
    "--site-dir",
    default="_site",
    show_default=True,
    help="The built site's folder, relative to the repository root.",
)
@click.option("--branch", default="main", show_default=True, help="Branch whose pushes deploy the site.")
@click.option("--force", is_flag=True, help="Replace an existing workflow file.")
def publish(repo: str, site_dir: str, branch: str, force: bool) -> None:
    """Write a GitHub Actions workflow that deploys the built site to GitHub Pages."""
    from atlasgen.site.publish import write_pages_workflow

    try:
        target = write_pages_workflow(Path(repo), site_dir, branch, overwrite=force)
    except AtlasgenError as exc:
        _fail(exc.errors, exc.headline)
    built = Path(repo) / site_dir
    if (built / "manifest.json").is_file():
        _citation_warnings(built)
    else:
        click.echo(
            f"warning: {built} holds no built site yet: build it (atlasgen build -o {site_dir}) "
            "with site.base_url "
            "and site.authors set, and run `atlasgen check` on it before you push.",
            err=True,
        )
    click.echo(
        f"wrote {target}; commit it with the {site_dir}/ folder and set Pages' source to GitHub "
        "Actions (docs/publishing.md)."
    )


if __name__ == "__main__":
    main()
