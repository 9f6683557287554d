"""Annotations (atlasgen/annotations.py): the files' validation, the sanitised notes, and the human label
taking precedence on the pages, cards, search, exports and manifest of a rendered site."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from test_site import LAYERS, MODEL, fake_label, make_fake_artifacts, render

from atlasgen.annotations import (
    AnnotationError,
    check_units,
    identity,
    load_annotations,
    new_file_text,
    parse_unit,
    render_notes,
)

L0, L1 = LAYERS  # mixed4a, mixed5b

GOOD = """---
label: bird heads, side view
tags: [Birds, heads]
confidence: high
author: Ada Lovelace
date: 2026-11-20
---
Fires on the *head* of a perched bird; compare mixed5b/f/6 and [this neuron](mixed5b/n/2),
and mixed4a/f/3 one layer down.
"""

INJECTION = """---
label: "<img src=x onerror=alert(1)>"
---
<script>alert("notes")</script>
<div onclick="alert(2)">raw html</div>
[click me](javascript:alert(3)) [data](data:text/html,<script>alert(4)</script>) [ok](https://example.org/x)
![tracker](https://example.org/pixel.png)
<a href="javascript:alert(5)">anchor</a>
"""


def write(folder: Path, rel: str, text: str) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(folder: Path, layers=LAYERS) -> list[str]:
    with pytest.raises(AnnotationError) as exc:
        load_annotations(folder, list(layers))
    return exc.value.errors


# ----------------------------------------------------------------------------- files


def test_valid_file(tmp_path):
    write(tmp_path, f"{L1}/f/5.md", GOOD)
    write(tmp_path, f"{L1}/n/1.md", "Only notes, no front matter.\n")
    write(tmp_path, "README.md", "# how we annotate\n")  # skipped
    (a, b) = load_annotations(tmp_path, LAYERS)
    assert (a.layer, a.kind, a.unit, a.code) == (L1, "f", 5, f"{L1}/f/5")
    assert a.label == "bird heads, side view" and a.tags == ("birds", "heads")
    assert (a.confidence, a.author, a.date) == ("high", "Ada Lovelace", "2026-11-20")
    assert a.links == ((L1, "f", 6), (L1, "n", 2), (L0, "f", 3))
    assert (b.kind, b.unit, b.label, b.notes) == ("n", 1, "", "Only notes, no front matter.")
    assert len(a.sha256) == 64
    assert set(identity(tmp_path)) == {f"{L1}/f/5.md", f"{L1}/n/1.md"}


def test_unknown_key_names_the_file_and_key(tmp_path):
    write(tmp_path, f"{L1}/f/5.md", "---\nlable: x\ncolour: red\n---\n")
    errors = errors_of(tmp_path)
    assert f"annotations/{L1}/f/5.md: lable: unknown key. Did you mean 'label'?" in errors
    assert any(
        e.startswith(f"annotations/{L1}/f/5.md: colour: unknown key. Valid keys: label") for e in errors
    )


@pytest.mark.parametrize(
    "rel, text, expected",
    [
        ("mixed5c/f/1.md", "x", "'mixed5c' is not a studied layer (did you mean 'mixed5b'?)"),
        (f"{L1}/x/1.md", "x", "'x' is not a unit kind"),
        (f"{L1}/f/01.md", "x", "name it <layer>/<f|n>/<id>.md"),
        (f"{L1}/f/one.md", "x", "name it <layer>/<f|n>/<id>.md"),
        (
            f"{L1}/f/1.md",
            "---\nconfidence: sure\n---\n",
            "confidence: 'sure' is not one of low, medium, high",
        ),
        (f"{L1}/f/1.md", "---\ndate: last week\n---\n", "date: 'last week' is not a date"),
        (f"{L1}/f/1.md", "---\ntags: {a: 1}\n---\n", "tags: expected a list"),
        (f"{L1}/f/1.md", '---\ntags: ["a<b"]\n---\n', "tags[0]: 'a<b' has characters"),
        (f"{L1}/f/1.md", "---\nlabel: [a, b]\n---\n", "label: expected text, got list"),
        (f"{L1}/f/1.md", "---\nlabel: " + "x" * 200 + "\n---\n", "label: 200 characters, at most 120"),
        (f"{L1}/f/1.md", "---\nlabel: x\n", "never closed"),
        (f"{L1}/f/1.md", "---\nlabel: [x\n---\n", "front matter is not valid YAML"),
        (f"{L1}/f/1.md", "---\n- a\n---\n", "front matter must be a mapping"),
    ],
)
def test_invalid_files(tmp_path, rel, text, expected):
    write(tmp_path, rel, text)
    errors = errors_of(tmp_path)
    assert len(errors) == 1 and errors[0].startswith(f"annotations/{rel}: ") and expected in errors[0], errors


def test_unknown_units_and_links(tmp_path):
    write(tmp_path, f"{L1}/f/25.md", "see mixed5b/n/99\n")
    write(tmp_path, f"{L1}/n/3.md", "fine, see mixed5b/f/19\n")
    (a, b) = sorted(load_annotations(tmp_path, LAYERS), key=lambda x: x.kind)
    errors = check_units([a, b], {(L1, "f"): 20, (L1, "n"): 8})
    assert errors == [
        f"annotations/{L1}/f/25.md: {L1}/f/25 is not a unit: {L1} has 20 features (ids 0 to 19). "
        "Fix: rename the file to an existing id, or remove it.",
        f"annotations/{L1}/f/25.md: notes link to {L1}/n/99, which is not a unit ({L1} has 8 neurons). "
        "Fix: correct the id.",
    ]


def test_missing_folder(tmp_path):
    with pytest.raises(AnnotationError, match="is not a folder"):
        load_annotations(tmp_path / "nope", LAYERS)


# ----------------------------------------------------------------------------- notes


def _href(layer, kind, unit):
    return f"ROOT/{layer}/{kind}/{unit}/index.html"


def test_cross_links_become_links_but_not_in_code():
    html = render_notes(
        "compare mixed5b/f/6, [this one](mixed5b/n/2) and `mixed5b/f/7`; not xmixed5b/f/8 or mixed5b/f/9x",
        LAYERS,
        _href,
    )
    assert '<a href="ROOT/mixed5b/f/6/index.html">mixed5b/f/6</a>' in html
    assert '<a href="ROOT/mixed5b/n/2/index.html">this one</a>' in html
    assert "<code>mixed5b/f/7</code>" in html
    assert html.count("<a ") == 2


def test_markup_injection_is_neutralised():
    html = render_notes(INJECTION.split("---\n", 2)[2], LAYERS, _href)
    assert "<script" not in html and "<div" not in html and "<img" not in html
    assert not re.search(r"<a [^>]*href=\"(javascript|data):", html, re.I)
    assert "onclick=" not in html.replace("onclick=&quot;", "")  # only as escaped text
    assert "&lt;script&gt;" in html  # shown as text
    assert '<a href="https://example.org/x">ok</a>' in html
    assert "[click me](javascript:alert(3))" in html  # not a link


def test_new_file_is_a_valid_empty_annotation(tmp_path):
    text = new_file_text(f"{L1}/f/3", ["automatic label: red circle", "density: fires on 3% of images"])
    write(tmp_path, f"{L1}/f/3.md", text)
    (a,) = load_annotations(tmp_path, LAYERS)
    assert (a.label, a.tags, a.confidence, a.author, a.date) == ("", (), "", "", "")
    assert "automatic label: red circle" in text and "automatic label" not in a.notes
    assert parse_unit(f"{MODEL}/{L1}/f/3/index.html", MODEL, LAYERS) == (L1, "f", 3)
    with pytest.raises(ValueError, match="not a studied layer"):
        parse_unit("mixed5x/f/3", MODEL, LAYERS)


# ----------------------------------------------------------------------------- a rendered site


@pytest.fixture(scope="module")
def annotated_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotated")
    art = make_fake_artifacts(root / "art")
    folder = root / "annotations"
    write(folder, f"{L1}/f/5.md", GOOD)
    write(folder, f"{L1}/f/7.md", INJECTION)
    write(folder, f"{L1}/n/2.md", "---\nlabel: red things\ntags: [colour]\n---\nA neuron for red.\n")
    annotations = tuple(load_annotations(folder, LAYERS))
    out = root / "site"
    render(art, out, annotations=annotations)
    return out, annotations


def _page(site: Path, kind: str, i: int, layer: str = L1) -> str:
    return (site / MODEL / layer / kind / str(i) / "index.html").read_text()


def test_human_label_on_the_unit_page(annotated_site):
    site, _ = annotated_site
    html = _page(site, "f", 5)
    assert f"<title>{L1}/f/5 · bird heads, side view" in html
    assert '<span class="unit-label human">bird heads, side view</span>' in html
    assert f'automatic label: <span class="auto-label">{fake_label(5, 1)}</span>' in html
    assert "Label by Ada Lovelace" in html and '<time datetime="2026-11-20">' in html
    assert "confidence high" in html and '<li class="tag">birds</li>' in html
    # Cross-links, relative to the page (shortened by urls.shorten_links).
    assert '<a href="../6/index.html">mixed5b/f/6</a>' in html
    assert '<a href="../../n/2/index.html">this neuron</a>' in html
    assert '<a href="../../../mixed4a/f/3/index.html">mixed4a/f/3</a>' in html
    neuron = _page(site, "n", 2)
    assert '<span class="unit-label human">red things</span>' in neuron
    assert "automatic label" not in neuron  # neurons have none


def test_injected_markup_does_not_reach_the_page(annotated_site):
    site, _ = annotated_site
    html = _page(site, "f", 7)
    notes = re.split(r"</div>\s*</aside>", html.split('<div class="notes">')[1])[0]
    tags = set(re.findall(r"<([a-z]+)[\s>]", notes))
    assert tags <= {"p", "a", "em", "strong", "code"}, tags  # no script, div, img: raw HTML is text
    assert re.findall(r'<a href="([^"]*)"', notes) == [
        "https://example.org/x",
        "https://example.org/pixel.png",
    ]
    assert "&lt;script&gt;alert(&quot;notes&quot;)&lt;/script&gt;" in notes
    assert '<span class="unit-label human">&lt;img src=x onerror=alert(1)&gt;</span>' in html
    assert "<script>alert" not in html and "<img src=x" not in html


def test_human_label_on_cards_search_and_exports(annotated_site):
    site, annotations = annotated_site
    cards = (site / MODEL / L1 / "cards.js").read_text()
    data = json.loads(cards[len("window.ATLAS_CARDS = ") : -2])
    assert data["grids"]["features"]["columns"]["label"][5] == "bird heads, side view"
    assert data["grids"]["neurons"]["columns"]["label"][2] == "red things"
    layer_page = (site / MODEL / L1 / "index.html").read_text()
    assert "<span>bird heads, side view</span>" in layer_page
    features = json.loads((site / f"data/{MODEL}/{L1}/features.json").read_text())["features"]
    assert features[5]["label"] == "bird heads, side view" and features[5]["auto_label"] == fake_label(5, 1)
    assert features[5]["annotation"]["tags"] == ["birds", "heads"] and "annotation" not in features[4]
    with gzip.open(site / f"data/{MODEL}/{L1}/features.jsonl.gz", "rt") as fh:
        rec = [json.loads(line) for line in fh][5]
    assert rec["label"] == "bird heads, side view" and rec["annotation"]["author"] == "Ada Lovelace"
    assert rec["annotation"]["notes"].startswith("Fires on the *head*")
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["annotations"] == {a.path: {"unit": a.code, "sha256": a.sha256} for a in annotations}
    assert "bird heads, side view" in (site / "search_index.js").read_text()
    map_data = (site / MODEL / L1 / "map" / "data.js").read_text()
    assert '"bird heads, side view"' in map_data and f'"{fake_label(5, 1)}"' not in map_data


def test_annotation_of_a_missing_unit_stops_the_render(tmp_path):
    art = make_fake_artifacts(tmp_path / "art")
    write(tmp_path / "ann", f"{L1}/f/20.md", "x\n")  # 20 features: ids 0 to 19
    with pytest.raises(AnnotationError, match=r"mixed5b/f/20 is not a unit: mixed5b has 20 features"):
        render(art, tmp_path / "site", annotations=tuple(load_annotations(tmp_path / "ann", LAYERS)))


# ----------------------------------------------------------------------------- the build and the command


def _build(config: Path):
    from atlasgen.config import load_config
    from atlasgen.pipeline import Pipeline
    from atlasgen.progress import Console

    return Pipeline(load_config(config), console=Console(0)).build()


def test_annotate_then_build_rerenders_only_the_site(tiny_copy):
    from click.testing import CliRunner

    from atlasgen.cli import main

    folder, config, site = tiny_copy
    runner = CliRunner()
    result = runner.invoke(main, ["annotate", "-c", str(config), "mixed5b/f/3"])
    assert result.exit_code == 0, result.output
    path = folder / "annotations" / "mixed5b" / "f" / "3.md"
    text = path.read_text()
    assert "#   density: fires on" in text and "#   page: demonet/mixed5b/f/3/index.html" in text
    again = runner.invoke(main, ["annotate", "-c", str(config), "demonet/mixed5b/f/3"])
    assert again.exit_code == 0 and "exists" in again.output and path.read_text() == text
    bad = runner.invoke(main, ["annotate", "-c", str(config), "mixed5b/f/100000"])
    assert bad.exit_code == 2 and "mixed5b/f/100000 is not a unit" in bad.output

    path.write_text(
        text.replace("label:  #", "label: wheels up close  #").replace("tags: []", "tags: [wheels]")
    )
    summary = _build(config)
    assert summary.ran == ["site"]  # no stage recomputed
    page = (site / "demonet/mixed5b/f/3/index.html").read_text()
    assert '<span class="unit-label human">wheels up close</span>' in page
    manifest = json.loads((site / "manifest.json").read_text())
    assert list(manifest["annotations"]) == ["mixed5b/f/3.md"]
    assert _build(config).ran == []  # unchanged annotations: nothing to do


def test_preflight_rejects_bad_annotations_before_any_stage(tiny_copy):
    from atlasgen.config import ConfigError

    folder, config, _ = tiny_copy
    write(folder / "annotations", "mixed5b/f/100000.md", "---\nlable: x\n---\n")
    write(folder / "annotations", "mixed5b/n/99999.md", "see mixed5b/f/4\n")
    with pytest.raises(ConfigError) as exc:
        _build(config)
    errors = exc.value.errors
    assert errors == ["annotations/mixed5b/f/100000.md: lable: unknown key. Did you mean 'label'?"]
    (folder / "annotations/mixed5b/f/100000.md").write_text("---\nlabel: x\n---\n")
    with pytest.raises(ConfigError) as exc:
        _build(config)
    assert [e.split(":")[0] for e in exc.value.errors] == [
        "annotations/mixed5b/f/100000.md",
        "annotations/mixed5b/n/99999.md",
    ]
    assert re.search(
        r"mixed5b/f/100000 is not a unit: mixed5b has \d+ features \(ids 0 to \d+\)", exc.value.errors[0]
    )
    assert re.search(r"mixed5b/n/99999 is not a unit: mixed5b has \d+ neurons", exc.value.errors[1])
