"""The site search (static/atlas.js AtlasSearch over search_index.js with the vendored MiniSearch): one index
over features, neurons, classes, human labels, automatic labels, tags and notes, ranked and typo tolerant,
with keyboard navigation; in Chromium over file:// and over HTTP. Also the search page and the 404 page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import serve_folder
from test_annotations import write
from test_site import (  # noqa: F401
    LAYERS,
    MODEL,
    _Page,
    browser,
    fake_label,
    make_fake_artifacts,
    needs_chromium,
    render,
)

from atlasgen.annotations import load_annotations
from atlasgen.unit_collections import load_collections

L0, L1 = LAYERS


@pytest.fixture(scope="module")
def search_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("search")
    art = make_fake_artifacts(root / "art")
    folder = root / "annotations"
    write(
        folder, f"{L1}/f/5.md", "---\nlabel: cactus spines\ntags: [desert, plants]\n---\nSpiky succulents.\n"
    )
    write(folder, f"{L1}/n/3.md", "---\nlabel: lighthouse beams\n---\nThe notes mention a zeppelin.\n")
    write(folder, f"{L0}/f/2.md", "Notes only: the word cactus appears here, in the notes.\n")
    write(
        root / "collections",
        "quokka-parade.md",
        f"---\ntitle: Quokka parade\nunits:\n  - {{unit: {L1}/f/4, note: the first marsupial}}\n"
        f"  - {{unit: {L0}/n/1}}\n---\nUnits that wander like wallabies.\n",
    )
    out = root / "site"
    render(
        art,
        out,
        annotations=tuple(load_annotations(folder, LAYERS)),
        collections=tuple(load_collections(root / "collections", LAYERS)),
    )
    return out


def _index(site: Path) -> dict:
    text = (site / "search_index.js").read_text()
    prefix = "window.ATLAS_SEARCH = "
    assert text.startswith(prefix) and text.endswith(";\n")
    return json.loads(text[len(prefix) : -2])


def test_index_covers_every_unit_class_and_annotation(search_site):
    index = _index(search_site)
    assert [L["name"] for L in index["layers"]] == LAYERS
    for li, L in enumerate(index["layers"]):
        assert L["f"]["n"] == 20 and L["n"]["n"] == 8
        for kind in ("f", "n"):
            for column in ("label", "classes", "flags", "density", "thumb"):
                assert len(L[kind][column]) == L[kind]["n"], (kind, column)
            for i, t in enumerate(L[kind]["thumb"]):
                name = {1: "thumb.webp", 2: "vis.webp"}.get(t)
                if name:
                    assert (search_site / MODEL / L["name"] / kind / str(i) / name).is_file()
        assert L["f"]["label"][7] == fake_label(7, li)  # the automatic label, even where annotated
    assert index["annotations"] == [
        [L0, "f", 2, "", "", "Notes only: the word cactus appears here, in the notes."],
        [L1, "f", 5, "cactus spines", "desert plants", "Spiky succulents."],
        [L1, "n", 3, "lighthouse beams", "", "The notes mention a zeppelin."],
    ]
    assert len(index["classes"]) == 6 and all((search_site / c[0]).is_file() for c in index["classes"])
    assert index["collections"] == [
        [
            f"{MODEL}/collections/quokka-parade/index.html",
            "Quokka parade",
            "Units that wander like wallabies. the first marsupial",
        ]
    ]


@pytest.fixture(scope="module")
def http_base(search_site):
    with serve_folder(search_site.parent) as port:
        yield f"http://127.0.0.1:{port}/{search_site.name}/"


@pytest.fixture(params=["file", "http"])
def base(request, search_site):
    if request.param == "http":
        return request.getfixturevalue("http_base")
    return search_site.resolve().as_uri() + "/"


@pytest.fixture
def tab(browser):  # noqa: F811
    t = _Page(browser, viewport={"width": 1100, "height": 900})
    yield t
    t.close()


def _type(page, text: str) -> None:
    page.fill("#search-input", text)
    page.wait_for_function("() => document.getElementById('search-status').textContent.length > 0")


def _hits(page) -> list[str]:
    return page.eval_on_selector_all(
        "#search-results a", "els => els.map(a => a.getAttribute('href').replace(/\\/index\\.html$/, ''))"
    )


@needs_chromium
def test_search_ranks_ids_labels_and_notes_and_tolerates_typos(tab, base, search_site):
    page = tab.page
    page.goto(f"{base}index.html")
    # An exact id: a feature and the neuron of that id; "n/3" and a full code give exactly that unit first.
    _type(page, f"{L1}/f/7")
    assert _hits(page)[0] == f"{MODEL}/{L1}/f/7"
    _type(page, "n/3")
    assert _hits(page)[:2] == [f"{MODEL}/{L1}/n/3", f"{MODEL}/{L0}/n/3"]
    # Human label before notes; a typo ("cactsu") still finds both, in the same order.
    for q in ("cactus", "cactsu"):
        _type(page, q)
        hits = _hits(page)
        assert hits[:2] == [f"{MODEL}/{L1}/f/5", f"{MODEL}/{L0}/f/2"], (q, hits)
    first = page.locator("#search-results li").first
    assert first.locator("img.r-thumb").count() == 1
    text = first.inner_text()
    assert "cactus spines" in text and "feature" in text.lower() and "fires on" in text
    assert f"automatic: {fake_label(5, 1)}" in text
    # A neuron by its human label, a tag, a word of the notes.
    _type(page, "lighthouse")
    assert _hits(page)[0] == f"{MODEL}/{L1}/n/3"
    _type(page, "desert")
    assert _hits(page)[0] == f"{MODEL}/{L1}/f/5"
    _type(page, "zeppelin")
    assert _hits(page) == [f"{MODEL}/{L1}/n/3"]
    # An automatic label and a class page.
    label = fake_label(7, 1)
    _type(page, label)
    assert _hits(page)[0] == f"{MODEL}/{L1}/f/7"
    href, name, _ = _index(search_site)["classes"][0]
    _type(page, name)
    assert _hits(page)[0] == href.removesuffix("/index.html")
    assert page.locator("#search-results li .r-kind").first.text_content() == "class"
    _type(page, "qqqzzz")
    assert page.inner_text("#search-status") == "No match."
    assert not tab.errors, tab.errors


@needs_chromium
def test_search_finds_collections_and_short_queries(tab, base):
    page = tab.page
    page.goto(f"{base}index.html")
    # A collection by its title (a typo too) and by the words of its prose and notes.
    for q in ("quokka", "quokak", "wallabies", "marsupial"):
        _type(page, q)
        assert _hits(page) == [f"{MODEL}/collections/quokka-parade"], q
    assert page.locator("#search-results li .r-kind").first.text_content() == "collection"
    assert "wander like wallabies" in page.locator("#search-results li").first.inner_text()
    # One or two characters: digits match ids by prefix after the exact ids (last layer first, features
    # before neurons); "n/" lists the neurons; a lone "f" lists words starting with f, then the features.
    _type(page, "1")
    exact = [f"{MODEL}/{L1}/f/1", f"{MODEL}/{L1}/n/1", f"{MODEL}/{L0}/f/1", f"{MODEL}/{L0}/n/1"]
    hits = page.eval_on_selector_all("#search-results a", "els => els.map(a => a.getAttribute('href'))")
    hits = [h.removesuffix("/index.html") for h in hits]
    assert hits[:4] == exact
    assert hits[4:20] == [f"{MODEL}/{L1}/f/{i}" for i in range(10, 20)] + [
        f"{MODEL}/{L0}/f/{i}" for i in range(10, 16)
    ]
    assert page.inner_text("#search-status").startswith("Showing 20 of ")
    _type(page, "15")
    assert _hits(page)[:2] == [f"{MODEL}/{L1}/f/15", f"{MODEL}/{L0}/f/15"]
    _type(page, "n/")
    hits = _hits(page)
    assert hits[:8] == [f"{MODEL}/{L1}/n/{i}" for i in range(8)] and all("/n/" in h for h in hits)
    _type(page, "f")
    status = page.inner_text("#search-status")
    assert status.startswith("Showing 20 of ") and int(status.split(" of ")[1].split()[0]) >= 40
    _type(page, f"{L0}/f/1")
    assert _hits(page)[:3] == [f"{MODEL}/{L0}/f/1", f"{MODEL}/{L0}/f/10", f"{MODEL}/{L0}/f/11"]
    assert not tab.errors, tab.errors


@needs_chromium
def test_search_keyboard_navigation(tab, base):
    page = tab.page
    page.goto(f"{base}index.html")
    _type(page, "cactus")
    page.press("#search-input", "ArrowDown")
    page.press("#search-input", "ArrowDown")
    selected = page.locator("#search-results li[data-active]")
    assert selected.count() == 1 and selected.get_attribute("id") == "search-hit-1"
    assert page.inner_text("#search-status").startswith("2 of 2: ")
    assert page.evaluate("document.activeElement.id") == "search-input"  # typing goes on
    page.press("#search-input", "ArrowUp")
    assert page.locator("#search-results li[data-active]").get_attribute("id") == "search-hit-0"
    page.press("#search-input", "Enter")
    page.wait_for_url(re.compile(rf".*/{L1}/f/5/index\.html$"))
    page.go_back()
    _type(page, f"{L0}/f/3")
    page.press("#search-input", "Enter")  # Enter without moving opens the first hit
    page.wait_for_url(re.compile(rf".*/{L0}/f/3/index\.html$"))
    assert not tab.errors, tab.errors


@needs_chromium
def test_search_page_takes_its_query_from_the_url(tab, base):
    page = tab.page
    page.goto(f"{base}index.html")
    _type(page, "striped")  # more matches than the home page lists
    more = page.locator("#search-more a")
    assert more.is_visible()
    more.click()
    page.wait_for_url(re.compile(r".*/search\.html\?q=striped$"))
    page.wait_for_function("() => document.getElementById('search-status').textContent.length > 0")
    assert page.input_value("#search-input") == "striped"
    n = page.locator("#search-results li").count()
    assert n > 20 and page.inner_text("#search-status") == f"{n} matches."
    assert not tab.errors, tab.errors


@needs_chromium
def test_404_page_has_search_and_a_link_home(tab, search_site):
    # GitHub Pages serves 404.html at any missing path; the page's URLs are absolute under site.base_url,
    # here the test server's own address.
    html = (search_site / "404.html").read_text()
    assert 'href="https://example.github.io/atlas/"' in html
    assert '<script src="https://example.github.io/atlas/search_index.js"></script>' in html

    class NotFound(__import__("conftest").QuietHandler):
        def send_error(self, code, message=None, explain=None):
            if code != 404:
                return super().send_error(code, message, explain)
            body = (search_site / "404.html").read_bytes().replace(b"https://example.github.io/atlas/", base)
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serve_folder(search_site.parent, NotFound) as port:
        base = f"http://127.0.0.1:{port}/{search_site.name}/".encode()
        page = tab.page
        missing = []
        page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
        page.goto(f"{base.decode()}{MODEL}/{L1}/f/999/index.html")
        assert page.locator("h1").inner_text() == "Page not found"
        _type(page, "cactus")
        assert _hits(page)[0].endswith(f"{MODEL}/{L1}/f/5")
        page.locator("#search-results a").first.click()
        page.wait_for_url(re.compile(rf".*/{L1}/f/5/index\.html$"))
        page.go_back()
        page.locator("a", has_text="Go to the atlas home page").click()
        page.wait_for_url(re.compile(rf".*/{search_site.name}/$"))
        assert page.locator("#search-input").count() == 1  # the home page
    # The only failed loads: the missing page itself (opened, then back) and the browser's favicon probe.
    expected = {f"{search_site.name}/{MODEL}/{L1}/f/999/index.html", "favicon.ico"}
    assert {u.split("/", 3)[3] for u in missing} <= expected, missing
    assert [e for e in tab.errors if "status of 404" not in e] == []


# ----------------------------------------------------------------------------- the layer grid's filters


def _grid_ids(page, grid="feature") -> list[int]:
    return page.eval_on_selector_all(f"#{grid}-grid > li", "els => els.map(e => +e.dataset.id)")


@needs_chromium
def test_layer_grid_filters_combine_and_live_in_the_fragment(tab, base, search_site):
    page = tab.page
    cards = json.loads((search_site / MODEL / L1 / "cards.js").read_text()[len("window.ATLAS_CARDS = ") : -2])
    cols = cards["grids"]["features"]["columns"]
    page.goto(f"{base}{MODEL}/{L1}/index.html")
    page.wait_for_function("() => window.atlasGrids && window.atlasGrids.features")
    tools = page.locator('[data-grid-tools="features"]')
    # Annotated or not, by tag.
    tools.locator("[data-grid-flag]").select_option("+annotated")
    assert _grid_ids(page) == [5]
    tools.locator("[data-grid-flag]").select_option("")
    tools.locator("[data-grid-tag]").select_option("desert")
    assert _grid_ids(page) == [5]
    assert "features.tag=desert" in page.url
    tools.locator("[data-grid-tag]").select_option("")
    # Live features of one top class, sorted by density: the ids, in the sort's order.
    c = cols["cls"][0]
    tools.locator("[data-grid-class]").select_option(str(c))
    tools.locator("[data-grid-flag]").select_option("-dead")
    tools.locator('button[data-sort="density"]').click()
    want = sorted(
        (i for i in range(len(cols["cls"])) if cols["cls"][i] == c and not cols["dead"][i]),
        key=lambda i: (-cols["density"][i], i),
    )
    assert _grid_ids(page) == want and want
    assert tools.locator(".grid-status").inner_text() == f"{len(want)} of 20 features"
    # The view is in the fragment: opening the URL elsewhere shows the same cards and controls.
    url = page.url
    assert re.search(r"#.*features\.sort=density", url) and f"features.class={c}" in url
    assert "features.flag=-dead" in url
    assert tools.locator("[data-grid-link]").get_attribute("href") == url
    other = _Page(tab.context.browser, viewport={"width": 1100, "height": 900})
    try:
        other.page.goto(url)
        other.page.wait_for_function("() => window.atlasGrids && window.atlasGrids.features")
        assert _grid_ids(other.page) == want
        t = other.page.locator('[data-grid-tools="features"]')
        assert t.locator("[data-grid-class]").input_value() == str(c)
        assert t.locator('button[data-sort="density"]').get_attribute("aria-pressed") == "true"
        # Text filter on labels, human labels included (a fresh load: a fragment change alone is not one).
        other.page.goto("about:blank")
        other.page.goto(f"{base}{MODEL}/{L1}/index.html#features.q=cactus")
        other.page.wait_for_function("() => window.atlasGrids && window.atlasGrids.features")
        assert _grid_ids(other.page) == [5]
        assert not other.errors, other.errors
    finally:
        other.close()
    assert not tab.errors, tab.errors
