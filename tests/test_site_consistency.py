"""The site-wide consistency check (tests/site_consistency.py) on the tiny build: no two pages (or a page
and the JSON exports) disagree on a number, and a page that did would be caught.

Set ATLASGEN_CONSISTENCY_SITE to a built site's folder (e.g. the demo's _site) to check that one too.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_consistency import disagreements  # noqa: E402


def test_every_page_and_export_agree_on_every_number(tiny_build):
    _, _, site = tiny_build
    assert disagreements(site) == []


def test_a_page_that_disagrees_is_caught(tiny_copy):
    _, _, site = tiny_copy
    model = json.loads((site / "manifest.json").read_text())["model"]
    page = site / model / "mixed5b" / "f" / "1" / "index.html"
    text = page.read_text()
    changed = re.sub(r"fires on [^<(]+ of images \(", "fires on 99.9% of images (", text, count=1)
    assert changed != text
    page.write_text(changed)
    layer = site / model / "mixed5b" / "index.html"
    text = layer.read_text()
    changed = re.sub(
        r'(<tr data-key="dead"[^>]*>.*?<td>)([\d,]+)(</td>)',
        lambda m: m[1] + str(int(m[2]) + 1) + m[3],
        text,
        count=1,
        flags=re.S,
    )
    assert changed != text
    layer.write_text(changed)
    found = "\n".join(disagreements(site))
    assert "mixed5b/f/1: density disagrees" in found and "99.9%" in found
    assert "mixed5b: dead features disagree" in found


@pytest.mark.skipif(
    not os.environ.get("ATLASGEN_CONSISTENCY_SITE"), reason="ATLASGEN_CONSISTENCY_SITE not set"
)
def test_a_given_site_agrees_on_every_number():
    assert disagreements(Path(os.environ["ATLASGEN_CONSISTENCY_SITE"])) == []
