"""`atlasgen check`: validate a built site the way a reader's browser and GitHub Pages will meet it.

Problems found (each one line, naming the file):
* a link or image (href, src, srcset) that does not resolve to a file of the site, or an anchor
  (#id) that no element of the target page carries;
* a root-relative (/x) or external (https://, //host) URL in an attribute that the browser loads
  or follows -- the site must work from file:// and under any sub-path, and request nothing
  outside itself (text such as a shown permalink, and Open Graph metadata, are not requests);
* JavaScript that breaks on file://: fetch/XMLHttpRequest, ES modules (type="module", import()),
  workers, importScripts;
* the size budget;
* manifest.json that is missing, unreadable, or disagrees with the pages (every feature and
  neuron id it announces has its page, and no page exists beyond them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from atlasgen.site.publish import size_breakdown

LOADING_ATTRS = {"href", "src", "srcset", "poster", "data", "action", "formaction"}
# meta content, og:*, and text are not requests; <a href="https://..."> IS a link out (flagged too:
# a published atlas links only to itself, so it keeps working offline).
FILE_URL_HAZARDS = [
    (re.compile(r"\bfetch\s*\("), "fetch() is blocked on file://"),
    (re.compile(r"\bXMLHttpRequest\b"), "XMLHttpRequest is blocked on file://"),
    (re.compile(r"\bimport\s*\("), "dynamic import() is blocked on file://"),
    (re.compile(r"^\s*import\s+[\w{*]", re.M), "ES module imports are blocked on file://"),
    (re.compile(r"\bnew\s+(Shared)?Worker\s*\("), "workers from file:// URLs are blocked"),
    (re.compile(r"\bimportScripts\s*\("), "importScripts needs a worker"),
]


@dataclass
class _Page:
    ids: set[str] = field(default_factory=set)
    refs: list[tuple[str, str, int]] = field(default_factory=list)  # (attribute, url, line)
    scripts: list[tuple[str, int]] = field(default_factory=list)  # inline script text, line
    module_scripts: list[int] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = _Page()
        self._in_script: int | None = None
        self._script: list[str] = []

    def handle_starttag(self, tag, attrs):
        line = self.getpos()[0]
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.page.ids.add(a[key])
        if tag == "script":
            if (a.get("type") or "").strip().lower() == "module":
                self.page.module_scripts.append(line)
            if not a.get("src"):
                self._in_script, self._script = line, []
        if tag == "meta" or (tag == "link" and (a.get("rel") or "") in ("canonical",)):
            return
        for key, value in attrs:
            if key in LOADING_ATTRS and value is not None:
                if key == "srcset":
                    for part in value.split(","):
                        if part.strip():
                            self.page.refs.append((key, part.strip().split()[0], line))
                else:
                    self.page.refs.append((key, value, line))

    def handle_endtag(self, tag):
        if tag == "script" and self._in_script is not None:
            self.page.scripts.append(("".join(self._script), self._in_script))
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            self._script.append(data)


def _parse(path: Path) -> _Page:
    parser = _Parser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser.page


def check_site(site: Path, budget_mb: float = 900.0) -> list[str]:
    """All problems of the site in ``site``; an empty list means it passed."""
    site = Path(site).resolve()
    if not site.is_dir():
        return [f"{site}: no such folder"]
    problems: list[str] = []
    html_files = sorted(site.rglob("*.html"))
    if not (site / "index.html").is_file():
        problems.append("index.html: missing (the site has no home page)")
    parsed: dict[Path, _Page] = {p: _parse(p) for p in html_files}

    for path, page in parsed.items():
        rel = path.relative_to(site).as_posix()
        is_404 = rel == "404.html"  # served at any depth by GitHub Pages: may link to base_url
        for line in page.module_scripts:
            problems.append(f'{rel}:{line}: <script type="module"> does not load from file://')
        for text, line in page.scripts:
            for pattern, why in FILE_URL_HAZARDS:
                if pattern.search(text):
                    problems.append(f"{rel}:{line}: inline script: {why}")
        for attr, url, line in page.refs:
            problem = _check_ref(site, path, parsed, attr, url, allow_external=is_404)
            if problem:
                problems.append(f"{rel}:{line}: {problem}")

    for js in sorted(site.rglob("*.js")):
        rel = js.relative_to(site).as_posix()
        if "/vendor/" in f"/{rel}":
            # vendored libraries are checked by their own tests; they may mention fetch in unused code
            continue
        text = js.read_text(encoding="utf-8", errors="replace")
        for pattern, why in FILE_URL_HAZARDS:
            for m in pattern.finditer(text):
                problems.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {why}")

    problems += _check_manifest(site)
    total = sum(size_breakdown(site).values())
    if budget_mb > 0 and total > budget_mb * 1e6:
        problems.append(f"size: {total / 1e6:.1f} MB is over the budget of {budget_mb:g} MB")
    return problems


def _check_ref(
    site: Path, page: Path, parsed: dict[Path, _Page], attr: str, url: str, allow_external: bool
) -> str | None:
    url = url.strip()
    if not url or url.startswith(("data:", "blob:", "javascript:", "mailto:")):
        return None
    parts = urlsplit(url)
    if parts.scheme or url.startswith("//"):
        return (
            None
            if allow_external
            else f"{attr}={url!r}: external URL (the site must request and link only to itself)"
        )
    if url.startswith("/"):
        return f"{attr}={url!r}: root-relative URL (breaks under a sub-path and on file://)"
    if url.startswith("#"):
        target, fragment = page, parts.fragment
    else:
        target = (page.parent / unquote(parts.path)).resolve()
        fragment = parts.fragment
        try:
            target.relative_to(site)
        except ValueError:
            return f"{attr}={url!r}: points outside the site"
        if target.is_dir():
            return (
                f"{attr}={url!r}: a folder link (must end in index.html or a file name to work from file://)"
            )
        if not target.is_file():
            return f"{attr}={url!r}: no such file"
    if fragment and target.suffix == ".html":
        ids = parsed[target].ids if target in parsed else _parse(target).ids
        if fragment not in ids and not _dynamic_fragment(fragment):
            return f"{attr}={url!r}: no element with id {fragment!r}"
    return None


def _dynamic_fragment(fragment: str) -> bool:
    """Fragments read by page scripts rather than element ids (the map's #f=<id>, #view=...)."""
    return "=" in fragment


def _check_manifest(site: Path) -> list[str]:
    path = site / "manifest.json"
    if not path.is_file():
        return ["manifest.json: missing"]
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        return [f"manifest.json: not valid JSON ({exc})"]
    problems = []
    model = manifest.get("model")
    layers = manifest.get("layers")
    if not isinstance(model, str) or not isinstance(layers, dict) or not layers:
        return ["manifest.json: needs a model name and at least one layer"]
    for layer, entry in sorted(layers.items()):
        sha = entry.get("sae_sha256") if isinstance(entry, dict) else None
        if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            problems.append(f"manifest.json: layer {layer!r} has no valid sae_sha256")
        for kind, key in (("f", "n_features"), ("n", "n_neurons")):
            count = entry.get(key) if isinstance(entry, dict) else None
            folder = site / model / layer / kind
            found = (
                sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
            )
            if not isinstance(count, int):
                problems.append(f"manifest.json: layer {layer!r} has no {key}")
                continue
            if found != list(range(count)):
                missing = sorted(set(range(count)) - set(found))
                extra = sorted(set(found) - set(range(count)))
                problems.append(
                    f"{model}/{layer}/{kind}/: manifest announces {count} ids; "
                    f"{len(missing)} missing (first {missing[:3]}), {len(extra)} unannounced "
                    f"(first {extra[:3]})"
                )
            else:
                absent = [i for i in range(count) if not (folder / str(i) / "index.html").is_file()]
                if absent:
                    problems.append(
                        f"{model}/{layer}/{kind}/: {len(absent)} ids without index.html (first {absent[:3]})"
                    )
    return problems
