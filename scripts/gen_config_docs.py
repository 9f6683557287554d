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
  layers[0].name: 'mixed5c' is not a layer of model 'demonet'. Nearest valid names: mixed5b, mixed5a. Fix: run `atlasgen layers` to list them.
```

Which keys feed which stage (and so what a change re-runs) is listed in [pipeline.md](pipeline.md).

This file is generated from the schema by `python scripts/gen_config_docs.py`; a test checks that it lists every key.

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
