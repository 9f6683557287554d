"""Top-level map clusters vs the demo's planted superclasses, over seeds.

For each seed, builds the demo's dataset, model, SAE, examples and circuits (the stages the map
reads; feature visualisation, importance, the atlas and the site are not needed) in its own cache
folder, with the seed in ``model.train.seed``, every layer's ``sae.seed`` and ``map.seed``, then
runs the map stage (atlasgen.stages.map) for each ``map.source`` and cluster mode and prints
purity and adjusted Rand index of the top-level clusters, as the map page states them
(``atlasgen.site.mapview.evaluation_rows`` of the map stage's own map.json). Seed 0 with the
shipped config is the shipped demo. The upstream stages are cached like a build's, so a second
run with another map variant only reruns the map.

    python benchmarks/map_vs_superclasses.py -c site_config.yaml --seeds 5
    python benchmarks/map_vs_superclasses.py --seeds 5 --sae-steps 1500   # quicker exploration

Without ``--seeds``: the artifacts of the config's own cache (its latest build), as before.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from atlasgen.config import load_config
from atlasgen.progress import Console
from atlasgen.stage import StageContext
from atlasgen.stages import map as map_stage

UPSTREAM = ("dataset", "model", "activations", "sae", "examples", "circuits")
SOURCES = ("decoder", "class_weights", "coactivation", "predictions")
MODES = ("layout", "vectors")


def latest(cache: Path, stage: str) -> Path:
    meta = json.loads((cache / stage / "latest.json").read_text())
    key = meta.get("key") or meta.get("name") or next(iter(meta.values()))
    return cache / stage / key


def build_upstream(cfg, console: Console) -> dict[str, Path]:
    """The artifact folders of the stages the map reads, built (or found cached) in cfg's cache,
    keyed exactly as ``atlasgen build`` keys them."""
    from atlasgen.cache import hash_data
    from atlasgen.pipeline import STAGES, BuildSummary, Pipeline, resolve_device

    pipe = Pipeline(cfg, console=console)
    pipe.store.ensure()
    summary = BuildSummary()
    hashes: dict[str, str] = {}
    folders: dict[str, Path] = {}
    device = resolve_device(cfg)
    for stage in STAGES:
        if stage.name not in UPSTREAM:
            continue
        inputs = pipe._inputs(stage, hashes)
        key = hash_data(inputs)[:20]
        if pipe.store.is_complete(stage.name, key):
            meta = pipe.store.meta(stage.name, key)
        else:
            meta = pipe._run_stage(stage, key, inputs, device, summary, folders)
        hashes[stage.name] = meta["content_hash"]
        folders[stage.name] = pipe.store.final(stage.name, key)
    if summary.seconds:
        print("  built: " + ", ".join(f"{k} {v:.0f}s" for k, v in summary.seconds.items()), flush=True)
    return folders


def seeded(cfg, seed: int, sae_steps: int):
    """The config with ``seed`` in the model's training, every SAE and the map."""
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, train=dataclasses.replace(cfg.model.train, seed=seed))
    )
    layers = []
    for layer in cfg.layers:
        sae = dataclasses.replace(layer.sae, seed=seed)
        if sae_steps:
            sae = dataclasses.replace(sae, steps=min(sae.steps, sae_steps))
        layers.append(dataclasses.replace(layer, sae=sae))
    return dataclasses.replace(cfg, layers=layers, map=dataclasses.replace(cfg.map, seed=seed))


def page_figures(m: dict) -> dict:
    """Purity and ARI as the map page states them (its own formatting of map.json's evaluation)."""
    from atlasgen.site.mapview import evaluation_rows

    rows = {r["name"]: r["value"] for r in evaluation_rows(SimpleNamespace(map=m))}
    return {"purity": float(rows["purity"]), "ari": float(rows["adjusted Rand index"])}


def run_map(cfg, inputs: dict[str, Path], source: str, cluster: str) -> dict[str, dict]:
    cfg = dataclasses.replace(cfg, map=dataclasses.replace(cfg.map, source=source, cluster=cluster))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        map_stage.run(StageContext(cfg=cfg, out=Path(tmp), inputs=inputs, console=Console(0), device="cpu"))
        for layer in cfg.layers:
            out[layer.name] = json.loads((Path(tmp) / layer.name / "map.json").read_text())
    return out


def describe_top(m: dict) -> str:
    return ", ".join(f"{c['name']} ({c['size']})" for c in m["levels"][0])


def versions() -> str:
    """The versions the figures depend on (training, SAE, UMAP and clustering are all seeded, but
    their numerics differ between releases)."""
    import numpy
    import sklearn
    import torch
    import umap

    return (
        f"torch {torch.__version__}, numpy {numpy.__version__}, scikit-learn {sklearn.__version__}, "
        f"umap-learn {umap.__version__}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--config", default="site_config.yaml")
    ap.add_argument(
        "--seeds", type=int, default=0, help="build this many seeds (0, 1, ...) in their own caches"
    )
    ap.add_argument("--only", default="", help="comma-separated seeds to run of the --seeds (e.g. 1,2)")
    ap.add_argument(
        "--cache-root", default="/tmp/atlasgen-map-seeds", help="one cache folder per seed under it"
    )
    ap.add_argument("--sae-steps", type=int, default=0, help="cap every layer's SAE steps (exploration)")
    ap.add_argument("--sources", default="", help="comma-separated map.source values (default: all)")
    ap.add_argument("--modes", default="", help="comma-separated cluster modes (default: layout,vectors)")
    ap.add_argument("--layers", default="", help="comma-separated layers to report (default: all)")
    ap.add_argument("--json", default="", help="write every figure to this file")
    args = ap.parse_args()
    print(versions(), flush=True)
    base = load_config(args.config)
    sources = args.sources.split(",") if args.sources else list(SOURCES)
    modes = args.modes.split(",") if args.modes else list(MODES)
    shipped = (base.map.source, base.map.cluster)
    results = []  # (seed, layer, source, cluster, figures, top names)
    runs = []
    if args.seeds:
        only = {int(v) for v in args.only.split(",")} if args.only else set(range(args.seeds))
        for seed in [s for s in range(args.seeds) if s in only]:
            cfg = seeded(base, seed, args.sae_steps)
            cfg = dataclasses.replace(cfg, cache_dir=str(Path(args.cache_root) / f"seed{seed}"))
            print(f"seed {seed}: {cfg.cache_dir}", flush=True)
            runs.append((seed, cfg, build_upstream(cfg, Console(0))))
    else:
        cache = base.resolve(base.cache_dir)
        runs.append((None, base, {s: latest(cache, s) for s in UPSTREAM if s != "activations"}))
    report_layers = args.layers.split(",") if args.layers else [layer.name for layer in base.layers]
    for seed, cfg, inputs in runs:
        for source in sources:
            for cluster in modes:
                t = time.perf_counter()
                maps = run_map(cfg, inputs, source, cluster)
                for layer, m in maps.items():
                    if layer not in report_layers or not m.get("evaluation"):
                        continue
                    fig = page_figures(m)
                    results.append(
                        {
                            "seed": seed,
                            "layer": layer,
                            "source": source,
                            "cluster": cluster,
                            **fig,
                            "features": m["evaluation"]["features"],
                            "top": describe_top(m),
                        }
                    )
                    mark = " (shipped)" if (source, cluster) == shipped else ""
                    print(
                        f"seed {seed} {layer:8s} {source:13s} {cluster:7s} purity {fig['purity']:.3f} "
                        f"ARI {fig['ari']:.3f}{mark} {time.perf_counter() - t:.0f}s | {describe_top(m)}",
                        flush=True,
                    )
    print("\nper source and cluster mode (median; worst) over seeds")
    print("| layer | map.source | cluster | purity per seed | ARI per seed | median purity / ARI | worst |")
    print("|---|---|---|---|---|---|---|")
    for layer in report_layers:
        for source in sources:
            for cluster in modes:
                rows = [
                    r for r in results if (r["layer"], r["source"], r["cluster"]) == (layer, source, cluster)
                ]
                if not rows:
                    continue
                p = [r["purity"] for r in rows]
                a = [r["ari"] for r in rows]
                mark = " (shipped)" if (source, cluster) == shipped else ""
                print(
                    f"| {layer} | {source}{mark} | {cluster} | {' '.join(f'{v:.3f}' for v in p)} | "
                    f"{' '.join(f'{v:.3f}' for v in a)} | {statistics.median(p):.3f} / "
                    f"{statistics.median(a):.3f} | "
                    f"{min(p):.3f} / {min(a):.3f} |"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
