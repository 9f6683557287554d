"""Collections: curated, ordered lists of units with commentary, from Markdown files.

One file per collection in the collections folder (``site.collections``, or ``collections/`` beside
the config when it exists), named ``<slug>.md``; the slug (lower-case letters, digits and ``-``) is
the collection's permanent URL, ``<model>/collections/<slug>/index.html``::

    ---
    title: Cactus facets
    description: Two mixed5b features that split the cactus class by the kind of cactus.
    author: Ada Lovelace
    date: 2026-11-21
    units:
      - unit: mixed5b/f/322
        note: The saguaro, tall and alone in the desert.
      - unit: mixed5b/f/375
        note: Prickly pear pads, close up.
    ---
    Prose in Markdown; unit ids such as mixed5b/f/322 become links.

``units`` is required: each entry is ``{unit: <layer>/<f|n>/<id>, note: <Markdown sentence>}`` (the
note is optional), in the order the page shows them. ``circuit: true`` draws the weights between
the units of two consecutive studied layers (one kind: features with features, neurons with
neurons). Prose and notes are rendered like annotation notes (atlasgen.annotations.render_notes):
no raw HTML, no images, unit ids linked. Parsing and validation need no torch.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from atlasgen.annotations import (
    KINDS,
    files_identity,
    front_matter_date,
    markdown_files,
    plain_text,
    render_notes,
    split_front_matter,
    unknown_keys,
)
from atlasgen.errors import AtlasgenError

KEYS = ("title", "description", "author", "date", "circuit", "units")
UNIT_KEYS = ("unit", "note")
MAX_TITLE = 120
MAX_DESCRIPTION = 300
MAX_NOTE = 600
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ID = re.compile(r"^(0|[1-9][0-9]*)$")


class CollectionError(AtlasgenError):
    """A bad collection file. ``errors`` holds one line per problem, each naming the file and key."""

    headline = "collection error"


@dataclass(frozen=True)
class Member:
    """One unit of a collection, with the collection's sentence about it."""

    layer: str
    kind: str
    unit: int
    note: str = ""  # Markdown source

    @property
    def code(self) -> str:
        return f"{self.layer}/{self.kind}/{self.unit}"


@dataclass(frozen=True)
class Collection:
    """One collection, validated."""

    slug: str
    path: str  # the file, relative to the collections folder (posix)
    sha256: str  # content hash of the file's bytes
    title: str
    members: tuple[Member, ...]
    description: str = ""
    author: str = ""
    date: str = ""
    circuit: bool = False
    prose: str = ""  # Markdown source
    links: tuple[tuple[str, str, int], ...] = ()  # units the prose and notes link to

    def layers(self) -> list[str]:
        """The layers of the members, in the order they first appear."""
        return list(dict.fromkeys(m.layer for m in self.members))


def collections_dir(cfg) -> Path | None:
    """The collections folder of a config: ``site.collections``, else ``collections/`` beside the config
    when it exists, else None."""
    if cfg.site.collections:
        return cfg.resolve(cfg.site.collections)
    default = cfg.resolve("collections")
    return default if default.is_dir() else None


def _unit_id(text, where: str, layers: list[str], errors: list[str]) -> tuple[str, str, int] | None:
    if isinstance(text, bool) or not isinstance(text, str):
        errors.append(f"{where}: expected a unit id such as {layers[0]}/f/32, got {type(text).__name__}.")
        return None
    parts = text.strip().split("/")
    if len(parts) != 3 or parts[1] not in KINDS or not _ID.match(parts[2]):
        errors.append(
            f"{where}: {text!r} is not a unit id. Fix: write <layer>/<f|n>/<id>, e.g. {layers[0]}/f/32."
        )
        return None
    if parts[0] not in layers:
        near = difflib.get_close_matches(parts[0], layers, n=1, cutoff=0.5)
        errors.append(
            f"{where}: {parts[0]!r} is not a studied layer"
            + (f" (did you mean {near[0]!r}?)" if near else "")
            + f"; the layers are {', '.join(layers)}."
        )
        return None
    return parts[0], parts[1], int(parts[2])


def _links(markdown: str, layers: list[str], into: dict) -> None:
    render_notes(markdown, layers, lambda L, k, u: into.setdefault((L, k, u)) or "")


def parse_file(path: Path, rel: str, layers: list[str], errors: list[str]) -> Collection | None:
    """One collection file, or None (with lines in ``errors``, each starting with ``rel``) when it is not
    valid."""
    n_before = len(errors)
    slug = rel[:-3] if rel.endswith(".md") else rel
    if "/" in rel or not _SLUG.match(slug):
        errors.append(
            f"{rel}: {slug!r} is not a collection slug. Fix: name the file <slug>.md directly in the "
            "collections folder, the slug in lower-case letters, digits and '-' (e.g. grocery-store.md)."
        )
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.append(f"{rel}: not UTF-8 text (byte {exc.start}). Fix: save the file as UTF-8.")
        return None
    try:
        front, body, _ = split_front_matter(text.replace("\r\n", "\n"))
    except ValueError as exc:
        errors.append(f"{rel}: {exc}. Fix: end the front matter with a line '---'.")
        return None
    if front is None:
        errors.append(
            f"{rel}: no front matter. Fix: start the file with '---', title: and units:, then '---'."
        )
        return None
    try:
        meta = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        errors.append(f"{rel}: front matter is not valid YAML{where}: {getattr(exc, 'problem', exc)}.")
        return None
    if not isinstance(meta, dict):
        errors.append(f"{rel}: front matter must be a mapping of keys ({', '.join(KEYS)}).")
        return None
    unknown_keys(meta, KEYS, rel, errors)
    title = plain_text(meta.get("title"), f"{rel}: title", errors, MAX_TITLE, fix="shorten it")
    if meta.get("title") is None or (isinstance(meta.get("title"), str) and not title):
        errors.append(f"{rel}: title: missing. Fix: add a line 'title: ...' to the front matter.")
    description = plain_text(
        meta.get("description"), f"{rel}: description", errors, MAX_DESCRIPTION, fix="shorten it"
    )
    author = plain_text(meta.get("author"), f"{rel}: author", errors, 200, fix="shorten it")
    date = front_matter_date(meta.get("date"), f"{rel}: date", errors)
    circuit = meta.get("circuit", False)
    if not isinstance(circuit, bool):
        errors.append(f"{rel}: circuit: {circuit!r} is not true or false.")
        circuit = False
    linked: dict[tuple[str, str, int], None] = {}
    members: list[Member] = []
    raw = meta.get("units")
    if raw is None:
        errors.append(
            f"{rel}: units: missing. Fix: list the units, e.g. units: [{{unit: {layers[0]}/f/32, "
            f"note: ...}}]."
        )
        raw = []
    elif not isinstance(raw, list) or not raw:
        errors.append(
            f"{rel}: units: expected a non-empty list of {{unit: <layer>/<f|n>/<id>, note: <sentence>}}."
        )
        raw = []
    seen: dict[tuple[str, str, int], int] = {}
    for j, entry in enumerate(raw):
        where = f"{rel}: units[{j}]"
        if not isinstance(entry, dict):
            errors.append(f"{where}: expected a mapping {{unit: <layer>/<f|n>/<id>, note: <sentence>}}.")
            continue
        unknown_keys(entry, UNIT_KEYS, where, errors)
        if "unit" not in entry:
            errors.append(f"{where}: unit: missing. Fix: add unit: <layer>/<f|n>/<id>.")
            continue
        key = _unit_id(entry["unit"], f"{where}: unit", layers, errors)
        note = plain_text(entry.get("note"), f"{where}: note", errors, MAX_NOTE, fix="shorten it")
        if key is None:
            continue
        if key in seen:
            errors.append(
                f"{where}: unit: {'/'.join(map(str, key))} is already units[{seen[key]}]. Fix: "
                "list each unit once."
            )
            continue
        seen[key] = j
        members.append(Member(*key, note=note))
        _links(note, layers, linked)
    prose = body.strip("\n")
    _links(prose, layers, linked)
    if circuit and members:
        spans = list(dict.fromkeys(m.layer for m in members))
        kinds = sorted({m.kind for m in members})
        if len(spans) != 2 or len(kinds) != 1:
            errors.append(
                f"{rel}: circuit: a circuit needs units of exactly two layers and one kind (features with "
                f"features, or neurons with neurons); these are of {len(spans)} layer(s) "
                f"({', '.join(spans)}) and kind(s) {', '.join(kinds)}. Fix: choose such units, or "
                "remove circuit."
            )
    if len(errors) > n_before:
        return None
    return Collection(
        slug=slug,
        path=rel,
        sha256=hashlib.sha256(data).hexdigest(),
        title=title,
        members=tuple(members),
        description=description,
        author=author,
        date=date or "",
        circuit=circuit,
        prose=prose,
        links=tuple(linked),
    )


def load_collections(folder: Path | None, layers: list[str]) -> list[Collection]:
    """Every collection under ``folder`` (``.md`` files; README.md and hidden files are skipped), in
    slug order. Raises CollectionError listing every problem of every file."""
    if folder is None:
        return []
    folder = Path(folder)
    if not folder.is_dir():
        raise CollectionError(
            [
                f"site.collections: {str(folder)!r} is not a folder. Fix: create it, or point "
                "site.collections at the folder of <slug>.md files."
            ]
        )
    errors: list[str] = []
    out = [c for p, rel in markdown_files(folder) if (c := parse_file(p, rel, layers, errors)) is not None]
    if errors:
        raise CollectionError([f"collections/{e}" for e in errors])
    return out


def check_units(collections: list[Collection], counts: dict[tuple[str, str], int]) -> list[str]:
    """Error lines for collections whose units (or the ids their prose and notes link to) the layers
    do not have. ``counts`` maps (layer, kind) -> number of units; a missing entry is not checked."""
    errors = []
    for c in collections:
        for j, m in enumerate(c.members):
            n = counts.get((m.layer, m.kind))
            if n is not None and m.unit >= n:
                what = "features" if m.kind == "f" else "neurons"
                errors.append(
                    f"collections/{c.path}: units[{j}]: {m.code} is not a unit: {m.layer} has {n} {what} "
                    f"(ids 0 to {n - 1}). Fix: correct the id, or remove the entry."
                )
        for layer, kind, unit in c.links:
            n = counts.get((layer, kind))
            if n is not None and unit >= n:
                errors.append(
                    f"collections/{c.path}: text links to {layer}/{kind}/{unit}, which is not a unit "
                    f"({layer} has {n} {'features' if kind == 'f' else 'neurons'}). Fix: correct the id."
                )
    return errors


def identity(folder: Path | None) -> dict | None:
    """Content hash of every collection file (path -> sha256): the site stage's input; None without any."""
    return files_identity(folder)
