"""Regenerate docs/config.md from the config schema (atlasgen/config.py): python scripts/gen_config_docs.py"""

from pathlib import Path

from atlasgen.config import describe_schema

INTRO = """# Configuration: `site_config.yaml`

atlasgen reads one YAML file (default `site_config.yaml` in the current folder; `-c PATH` picks another).
Every key is optional: a missing key takes the default below, so an empty file builds the embedded demo.
Relative paths are resolved against the folder of the config file.

The file is checked before anything runs. Each problem is reported on one line with its key path and a fix,
and atlasgen exits with code 2 without touching the cache or the site:

```
atlasgen: config errors:
  featurevis.stepz: unknown key. Did you mean 'steps'?
  layers[0].name: 'mixed5c' is not a layer of model 'demonet'. Nearest valid names: mixed5b, mixed5a. \
Fix: run `atlasgen layers` to list them.
```

## When each check runs

1. **On reading the file** (every command: `build`, `status`, `layers`, `check`): each key on its
   own: unknown keys (with the nearest name), types, ranges and choices, and keys that contradict
   each other.
2. **Before any stage of `atlasgen build`** (`atlasgen/preflight.py`; nothing is written to the
   cache or the site by a run that fails it): the dataset folder's layout (class sub-folders; a
   parent of `train/` is named as such) and its class count; the model built cheaply on the `meta`
   device (no weights read or downloaded), so a factory's import errors and exceptions end in one
   line naming `model.arch`; every `layers[i].name` / `layers[i].module` against the model's
   modules (nearest names listed); the model's output count against the classes and
   `model.labels`; `importance.top_k` against the outputs; `dataset.class_names` matched to the
   folders (a partial match warns with examples); and the output folder (a non-empty folder
   atlasgen did not make is refused).
3. **While a stage runs**, only what needs real data or weights: an image that cannot be decoded
   (skipped, listed in the build summary), a weights file that does not fit the architecture, a
   class that no output of `model.labels` names, and layer-to-layer weights on a path that is not
   linear (skipped with the reason on the pages, see [analyses.md](analyses.md)).

Which keys feed which stage (and so what a change re-runs) is listed in [pipeline.md](pipeline.md).

This file is generated from the schema by `python scripts/gen_config_docs.py`; \
a test checks that it lists every key.

| key | type | default | meaning |
|---|---|---|---|
"""


def main() -> None:
    rows = [
        f"| `{path}` | {tp.replace('|', '/')} | {f'`{default}`' if default else ''} | {help} |"
        for path, tp, default, help in describe_schema()
    ]
    text = (
        INTRO
        + "\n".join(rows)
        + "\n\n`layers` is a list; `layers[].sae.k` means the key `k` inside each entry's `sae` mapping.\n"
    )
    (Path(__file__).resolve().parents[1] / "docs" / "config.md").write_text(text)


if __name__ == "__main__":
    main()
