"""Top-level map clusters vs the demo's planted superclasses.

Runs the map stage (atlasgen.stages.map) on existing artifacts of a build (its
dataset, model, sae, examples and circuits folders, found via <cache>/<stage>/latest.json)
for each layout source and prints purity and adjusted Rand index of the
top-level clusters against the superclass of each feature's dominant class.
Nothing is written to the cache; outputs go to a temporary folder.

    python benchmarks/map_vs_superclasses.py -c site_config.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from atlasgen.config import load_config
from atlasgen.progress import Console
from atlasgen.stage import StageContext
from atlasgen.stages import map as map_stage


def latest(cache: Path, stage: str) -> Path:
    meta = json.loads((cache / stage / "latest.json").read_text())
    key = meta.get("key") or meta.get("name") or next(iter(meta.values()))
    return cache / stage / key


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", "--config", default="site_config.yaml")
    ap.add_argument("--levels", default="", help="comma-separated cluster counts (default: the config's)")
    ap.add_argument("--cluster", default="", help="layout or vectors (default: the config's map.cluster)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    if args.levels:
        cfg.map = dataclasses.replace(cfg.map, levels=[int(v) for v in args.levels.split(",")])
    if args.cluster:
        cfg.map = dataclasses.replace(cfg.map, cluster=args.cluster)
    cache = cfg.resolve(cfg.cache_dir)
    inputs = {s: latest(cache, s) for s in ("dataset", "model", "sae", "examples", "circuits")}
    print(
        f"levels {cfg.map.levels}, clusters cut from the {cfg.map.cluster}; artifacts: "
        + ", ".join(f"{k}={v.name}" for k, v in inputs.items())
    )
    for source in ("decoder", "class_weights", "coactivation", "predictions"):
        cfg.map = dataclasses.replace(cfg.map, source=source)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            map_stage.run(
                StageContext(cfg=cfg, out=Path(tmp), inputs=inputs, console=Console(0), device="cpu")
            )
            for layer in cfg.layers:
                m = json.loads((Path(tmp) / layer.name / "map.json").read_text())
                ev = m["evaluation"]
                names = [c["name"] for c in m["levels"][0]]
                print(
                    f"{layer.name:10s} source={source:13s} features={ev['features']:5d} "
                    f"purity={ev['purity']:.3f} ARI={ev['adjusted_rand_index']:.3f} "
                    f"({ev['n_clusters']} clusters vs {ev['n_reference_groups']} superclasses) "
                    f"{time.perf_counter() - t:.1f}s  top names: {names}"
                )


if __name__ == "__main__":
    main()
