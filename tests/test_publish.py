"""Publishing: `atlasgen check`, stable feature ids across rebuilds, the size budget, CITATION.cff,
sitemap, 404 page and the GitHub Pages workflow -- on a real tiny build."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from atlasgen.config import load_config
from atlasgen.pipeline import Pipeline
from atlasgen.progress import Console
from atlasgen.site.check import check_site
from atlasgen.site.publish import (
    ChangedFeaturesError,
    SizeBudgetError,
    check_feature_ids,
    citation_cff,
    write_pages_workflow,
)


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "atlasgen", *args], cwd=cwd, capture_output=True, text=True)


def test_built_site_passes_check(tiny_build):
    _, _, site = tiny_build
    assert check_site(site) == []
    result = cli("check", str(site))
    assert result.returncode == 0, result.stderr
    assert "passed" in result.stdout


def test_check_reports_each_kind_of_problem(tiny_copy):
    _, _, site = tiny_copy
    page = next(site.glob("*/mixed5b/f/0/index.html"))
    html = page.read_text()
    html = html.replace(
        "</main>",
        '<a href="../1/missing.html">x</a><a href="/abs/index.html">y</a>'
        '<img src="https://cdn.example.com/a.png" alt="">'
        '<a href="../1/index.html#no-such-anchor">z</a>'
        '<script>fetch("data.json")</script></main>',
        1,
    )
    page.write_text(html)
    (site / "static" / "extra.js").write_text("const w = new Worker('w.js');\n")
    manifest = json.loads((site / "manifest.json").read_text())
    model = manifest["model"]
    manifest["layers"]["mixed5b"]["n_features"] += 1
    (site / "manifest.json").write_text(json.dumps(manifest))

    problems = check_site(site, budget_mb=0.001)
    text = "\n".join(problems)
    assert "missing.html" in text and "no such file" in text
    assert "/abs/index.html" in text and "root-relative" in text
    assert "cdn.example.com" in text and "external URL" in text
    assert "no-such-anchor" in text
    assert "fetch() is blocked on file://" in text
    assert "static/extra.js:1: workers" in text
    assert f"{model}/mixed5b/f/: manifest announces" in text
    assert "over the budget" in text
    result = cli("check", str(site), "--budget-mb", "900")
    assert result.returncode == 1
    assert "problem" in result.stderr and "missing.html" in result.stderr


def test_check_on_a_missing_folder_fails_cleanly(tmp_path):
    result = cli("check", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "no such folder" in result.stderr and "Traceback" not in result.stderr


def test_rebuild_with_another_sae_stops_and_keeps_the_site(tiny_copy):
    folder, config, site = tiny_copy
    before = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    data = yaml.safe_load(config.read_text())
    data["layers"][0]["sae"]["seed"] = 12345  # another SAE: feature ids would mean other features
    config.write_text(yaml.safe_dump(data, sort_keys=False))

    result = cli("build", "-q", "-c", str(config))
    assert result.returncode == 2, result.stderr
    assert "feature ids would change meaning" in result.stderr
    assert "--accept-changed-features" in result.stderr and "new prefix" in result.stderr
    after = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    assert after == before  # nothing lost

    result = cli("build", "-q", "-c", str(config), "--accept-changed-features")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((site / "manifest.json").read_text())
    old_manifest = json.loads(before["manifest.json"])
    assert manifest["layers"]["mixed5b"]["sae_sha256"] != old_manifest["layers"]["mixed5b"]["sae_sha256"]


def test_feature_id_check_ignores_new_sites_and_layers(tmp_path):
    check_feature_ids(tmp_path, "m", {"l": "a" * 64})  # no site yet
    (tmp_path / "manifest.json").write_text(
        json.dumps({"model": "m", "layers": {"other": {"sae_sha256": "b" * 64}}})
    )
    check_feature_ids(tmp_path, "m", {"l": "a" * 64})  # a new layer
    check_feature_ids(tmp_path, "other-model", {"other": "a" * 64})  # another model prefix
    with pytest.raises(ChangedFeaturesError):
        check_feature_ids(tmp_path, "m", {"other": "a" * 64})


def test_size_budget_stops_with_a_breakdown(tiny_copy):
    folder, config, site = tiny_copy
    before = (site / "manifest.json").read_bytes()
    cfg = load_config(config)
    cfg.site.size_budget_mb = 0.05
    cfg.site.title = "changed title"  # forces a re-render of the site only
    with pytest.raises(SizeBudgetError) as info:
        Pipeline(cfg, console=Console(0)).build()
    text = "\n".join(info.value.errors)
    assert "over the budget of 0.05 MB" in text
    for part in ("HTML pages", "dataset images", "unit visualisations"):
        assert part in text
    assert "left in" in text and (site / "manifest.json").read_bytes() == before


def test_citation_sitemap_404_and_open_graph(tiny_copy):
    folder, config, site = tiny_copy
    data = yaml.safe_load(config.read_text())
    data["site"] = {
        "title": "Tiny atlas",
        "base_url": "https://user.github.io/atlas/",
        "authors": ["Ada Lovelace", "Plato"],
        "version": "2.1",
        "doi": "10.5281/zenodo.1",
    }
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    assert cli("build", "-q", "-c", str(config)).returncode == 0

    cff = yaml.safe_load((site / "CITATION.cff").read_text())
    assert cff["title"] == "Tiny atlas" and cff["version"] == "2.1" and cff["doi"] == "10.5281/zenodo.1"
    assert cff["authors"] == [{"given-names": "Ada", "family-names": "Lovelace"}, {"name": "Plato"}]
    assert cff["url"] == "https://user.github.io/atlas/"
    sitemap = (site / "sitemap.xml").read_text()
    model = json.loads((site / "manifest.json").read_text())["model"]
    assert f"<loc>https://user.github.io/atlas/{model}/mixed5b/f/0/index.html</loc>" in sitemap
    assert sitemap.count("<loc>") == len(list(site.rglob("index.html")))
    page = (site / model / "mixed5b" / "f" / "0" / "index.html").read_text()
    assert (
        f'<meta property="og:url" content="https://user.github.io/atlas/{model}/mixed5b/f/0/index.html">'
        in page
    )
    assert '<meta property="og:image" content="https://user.github.io/atlas/' in page
    assert "author       = {Ada Lovelace and Plato}" in page and "doi:10.5281/zenodo.1" in page
    not_found = (site / "404.html").read_text()
    assert "<style>" in not_found and 'href="https://user.github.io/atlas/"' in not_found
    assert "stylesheet" not in not_found  # self-contained: GitHub Pages serves it at any depth
    assert check_site(site) == []


def test_citation_cff_escapes_yaml():
    text = citation_cff(
        title='A "quoted": title', authors=["Jo: O'Neil"], version="1", date="2026-01-01", url="", doi=None
    )
    data = yaml.safe_load(text)
    assert data["title"] == 'A "quoted": title'
    assert data["authors"] == [{"given-names": "Jo:", "family-names": "O'Neil"}]


def test_pages_workflow(tmp_path):
    target = write_pages_workflow(tmp_path, "docs/atlas")
    workflow = yaml.safe_load(target.read_text())
    steps = workflow["jobs"]["deploy"]["steps"]
    assert {"uses": "actions/upload-pages-artifact@v3", "with": {"path": "docs/atlas"}} in steps
    assert any(s.get("uses") == "actions/deploy-pages@v4" for s in steps)
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    result = cli("publish", "--workflow", str(tmp_path), "--site-dir", "docs/atlas")
    assert result.returncode == 2 and "--force" in result.stderr  # never overwrites silently
    assert cli("publish", "--workflow", str(tmp_path), "--site-dir", "/abs").returncode == 2
    assert cli("publish", "--workflow", str(tmp_path), "--site-dir", "_site", "--force").returncode == 0
