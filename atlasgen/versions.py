"""The versions of the numeric stack a build runs on: printed in the build summary, kept in the
site's manifest.json and part of the site's key (a site rendered under other versions is rendered
again). Read from the installed distributions' metadata, so nothing is imported."""

from __future__ import annotations

from importlib import metadata

NUMERIC_STACK = ("torch", "numpy", "scikit-learn", "umap-learn", "numba", "pillow")


def numeric_stack() -> dict[str, str]:
    """Distribution name -> installed version ("not installed" when absent), in NUMERIC_STACK order."""
    out = {}
    for name in NUMERIC_STACK:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe(versions: dict[str, str] | None = None) -> str:
    """One line: "torch 2.14.1, numpy 2.4.6, ..."."""
    versions = numeric_stack() if versions is None else versions
    return ", ".join(f"{k} {v}" for k, v in versions.items())
