"""What a published atlas promises beyond its pages: stable feature ids, a size that fits
GitHub Pages, citation metadata (CITATION.cff), a sitemap, and a Pages deployment workflow.

Nothing here imports torch; every output is a pure function of its inputs (same bytes).
"""

from __future__ import annotations

import json
from pathlib import Path

from atlasgen.cache import hash_file
from atlasgen.errors import AtlasgenError
from atlasgen.site.sizes import KEYS, mb, size_breakdown

ACCEPT_FLAG = "--accept-changed-features"


class ChangedFeaturesError(AtlasgenError):
    headline = "feature ids would change meaning"


class SizeBudgetError(AtlasgenError):
    headline = "site over its size budget"


# -----------------------------------------------------------------------------
# stable feature ids


def sae_hashes(sae_folder: Path, layers: list[str]) -> dict[str, str]:
    """The content hash of each layer's saved SAE, as the manifest records it."""
    return {name: hash_file(Path(sae_folder) / name / "sae.npz") for name in layers}


def check_feature_ids(out_dir: Path, model: str, new_hashes: dict[str, str]) -> None:
    """Stop when the site in ``out_dir`` was built from a different SAE for a layer that is built
    again: its feature URLs (``<model>/<layer>/f/<id>``) would silently start to mean other features.

    Only layers present in both builds count; a site that is new, or a layer that is new, is fine.
    """
    manifest_path = Path(out_dir) / "manifest.json"
    if not manifest_path.is_file():
        return
    try:
        old = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ChangedFeaturesError(
            [
                f"{manifest_path}: unreadable manifest ({exc}). Fix: move the old site away, or "
                f"pass {ACCEPT_FLAG} to overwrite it."
            ]
        ) from None
    if old.get("model") != model:
        return  # a different model: its URLs live under another prefix
    changed = []
    for layer, new in sorted(new_hashes.items()):
        before = (old.get("layers") or {}).get(layer, {}).get("sae_sha256")
        if before and before != new:
            changed.append(
                f"{model}/{layer}: the published site's SAE is {before[:12]}…, this build's is {new[:12]}…"
            )
    if changed:
        raise ChangedFeaturesError(
            changed
            + [
                f"The site in {out_dir} was built from other SAEs, so its feature URLs "
                f"({model}/<layer>/f/<id>) would point at different features. Choices:",
                "  publish under a new prefix: set `model.name` to a new value (e.g. add a version "
                "suffix) or build into a new folder with -o;",
                f"  or accept the change: run again with {ACCEPT_FLAG} (links that others cite "
                "will show other features).",
            ]
        )


# -----------------------------------------------------------------------------
# size budget


FIX = (
    "Fix: change the keys of the largest parts, study fewer layers (one site per layer, linked), or raise "
    "site.size_budget_mb for a host without GitHub Pages' 1 GB limit (docs/publishing.md)."
)


def check_size_budget(site: Path, budget_mb: float) -> int:
    """The site's size in bytes; raises SizeBudgetError with a breakdown when over ``budget_mb``
    (MB of 10^6 bytes)."""
    parts = size_breakdown(site)
    total = sum(parts.values())
    if budget_mb > 0 and total > budget_mb * 1e6:
        lines = [
            f"{site}: {mb(total)} is over the budget of {budget_mb:g} MB (site.size_budget_mb; 1 "
            "MB = 10^6 bytes). By part:"
        ]
        for name, size in sorted(parts.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {mb(size):>12}  {name}" + (f" (keys: {KEYS[name]})" if KEYS.get(name) else ""))
        lines.append(FIX)
        raise SizeBudgetError(lines)
    return total


def check_projected_size(projection, budget_mb: float) -> None:
    """Raise SizeBudgetError, before anything is rendered, when a :class:`atlasgen.site.plan.Projection`
    exceeds ``budget_mb`` (MB of 10^6 bytes)."""
    if budget_mb > 0 and projection.total > budget_mb * 1e6:
        raise SizeBudgetError(
            [
                f"the site would be about {mb(projection.total)}, over the budget of {budget_mb:g} MB "
                "(site.size_budget_mb; 1 MB = 10^6 bytes). Projected by part, before rendering:"
            ]
            + projection.lines()
            + [FIX, "Nothing was rendered; the site folder is unchanged."]
        )


# -----------------------------------------------------------------------------
# citation metadata, sitemap, 404


def _yaml_str(text: str) -> str:
    return json.dumps(str(text), ensure_ascii=False)  # a JSON string is a valid YAML scalar


def citation_cff(
    *,
    title: str,
    authors: list[str],
    version: str,
    date: str,
    url: str,
    doi: str | None,
    identifiers: list[tuple[str, str]] = (),
) -> str:
    """CITATION.cff (Citation File Format 1.2.0) for the atlas.

    ``authors`` (``site.authors``) must not be empty: CFF requires authors, and the site writes no
    CITATION.cff rather than a placeholder (``atlasgen check`` warns). ``identifiers`` (what, value): the
    SAE, model-weights and image-list hashes, written as CFF identifiers of type ``other``.
    """
    if not authors:
        raise ValueError("CITATION.cff needs at least one author (site.authors)")
    lines = [
        "cff-version: 1.2.0",
        'message: "If you use this atlas, please cite it as below."',
        f"title: {_yaml_str(title)}",
        "type: dataset",
        f"version: {_yaml_str(version)}",
        f"date-released: {_yaml_str(date)}",
        "authors:",
    ]
    for author in authors:
        given, _, family = author.strip().rpartition(" ")
        if given:
            lines += [f"  - given-names: {_yaml_str(given)}", f"    family-names: {_yaml_str(family)}"]
        else:
            lines += [f"  - name: {_yaml_str(family)}"]
    if url:
        lines.append(f"url: {_yaml_str(url)}")
    if doi:
        lines.append(f"doi: {_yaml_str(doi)}")
    if identifiers:
        lines.append("identifiers:")
        for what, value in identifiers:
            lines += [
                "  - type: other",
                f"    value: {_yaml_str(value)}",
                f"    description: {_yaml_str(what)}",
            ]
    return "\n".join(lines) + "\n"


def citation_warnings(site: Path) -> list[str]:
    """What keeps a built site from being cited as it is: no ``site.base_url`` (relative permalinks) or no
    ``site.authors`` (no CITATION.cff). Read from the site's manifest.json and files."""
    site = Path(site)
    warnings = []
    try:
        manifest = json.loads((site / "manifest.json").read_text())
    except (OSError, ValueError):
        return warnings  # check_site reports the manifest itself
    if not manifest.get("base_url"):
        warnings.append(
            "site.base_url is empty: every citation and BibTeX entry gives a relative permalink. "
            "Fix: set site.base_url to the URL the site is published at (e.g. https://user.github.io/atlas/) "
            "and build again."
        )
    if not (site / "CITATION.cff").is_file():
        warnings.append(
            "site.authors is empty: no CITATION.cff was written and the BibTeX entries have no author. "
            'Fix: set site.authors to a list of names ("Given Family") and build again.'
        )
    return warnings


def sitemap_xml(base_url: str, pages: list[str]) -> str:
    """sitemap.xml listing ``pages`` (site-relative paths) under ``base_url``."""
    from xml.sax.saxutils import escape

    base = base_url if base_url.endswith("/") else base_url + "/"
    body = "".join(f"  <url><loc>{escape(base + p)}</loc></url>\n" for p in sorted(pages))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n' + body + "</urlset>\n"
    )


# -----------------------------------------------------------------------------
# GitHub Pages deployment

PAGES_WORKFLOW = """\
# Deploys the atlas in {site_dir}/ to GitHub Pages.
# Written by `atlasgen publish --workflow`; see atlasgen's docs/publishing.md.
# Build the atlas locally (atlasgen build -o {site_dir}) and commit the folder,
# then enable Pages with "GitHub Actions" as the source in the repository settings.
name: Deploy atlas to GitHub Pages

on:
  push:
    branches: [{branch}]
    paths: ["{site_dir}/**", ".github/workflows/atlas-pages.yml"]
  workflow_dispatch:

permissions:
  contents: read
  pages: write
  id-token: write

concurrency:
  group: pages
  cancel-in-progress: false

jobs:
  deploy:
    runs-on: ubuntu-latest
    environment:
      name: github-pages
      url: ${{{{ steps.deployment.outputs.page_url }}}}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/configure-pages@v5
      - uses: actions/upload-pages-artifact@v3
        with:
          path: {site_dir}
      - id: deployment
        uses: actions/deploy-pages@v4
"""


def write_pages_workflow(repo: Path, site_dir: str, branch: str = "main", overwrite: bool = False) -> Path:
    """Write ``.github/workflows/atlas-pages.yml`` into the repository at ``repo``."""
    repo = Path(repo)
    if not repo.is_dir():
        raise AtlasgenError([f"{repo}: not a folder. Fix: give the root of your git repository."])
    if Path(site_dir).is_absolute() or ".." in Path(site_dir).parts:
        raise AtlasgenError(
            [f"--site-dir {site_dir!r}: give the site folder relative to the repository root (e.g. _site)."]
        )
    target = repo / ".github" / "workflows" / "atlas-pages.yml"
    if target.exists() and not overwrite:
        raise AtlasgenError([f"{target} exists. Fix: pass --force to replace it, or delete it first."])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(PAGES_WORKFLOW.format(site_dir=Path(site_dir).as_posix(), branch=branch))
    return target
