"""Annotations: the researcher's own label, tags and notes for a unit, from Markdown files.

One file per unit under the annotations folder (``site.annotations``, or ``annotations/`` beside the
config when it exists), at ``<layer>/<f|n>/<id>.md``::

    ---
    label: bird heads, side view
    tags: [birds, heads]
    confidence: high
    author: Ada Lovelace
    date: 2026-11-20
    ---
    Fires on the head of a perched bird; compare mixed5b/f/6353, which wants the whole bird.

Every front-matter key is optional; a file without front matter is notes only. Notes are Markdown
rendered without raw HTML (tags are shown as text), without images, and with only http(s), mailto and
relative links; a unit id written as ``<layer>/<f|n>/<id>`` (or a Markdown link to one) becomes a
link to that unit's page. Parsing and validation need no torch: the site stage reads the files
itself, so an edited annotation re-renders the site without recomputing any stage.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from atlasgen.errors import AtlasgenError

KEYS = ("label", "tags", "confidence", "author", "date")
CONFIDENCE = ("low", "medium", "high")
KINDS = ("f", "n")
MAX_LABEL = 120  # characters of a label (titles, cards)
MAX_TAG = 40
_TAG = re.compile(r"^[a-z0-9][a-z0-9 _-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(r"^(0|[1-9][0-9]*)$")


class AnnotationError(AtlasgenError):
    """A bad annotation file. ``errors`` holds one line per problem, each naming the file and key."""

    headline = "annotation error"


@dataclass(frozen=True)
class Annotation:
    """One unit's annotation, validated."""

    layer: str
    kind: str
    unit: int
    path: str  # the file, relative to the annotations folder (posix)
    sha256: str  # content hash of the file's bytes
    label: str = ""
    tags: tuple[str, ...] = ()
    confidence: str = ""
    author: str = ""
    date: str = ""
    notes: str = ""  # Markdown source
    links: tuple[tuple[str, str, int], ...] = field(default=())  # units the notes link to

    @property
    def code(self) -> str:
        return f"{self.layer}/{self.kind}/{self.unit}"

    def key(self) -> tuple[str, str, int]:
        return (self.layer, self.kind, self.unit)


def annotations_dir(cfg) -> Path | None:
    """The annotations folder of a config: ``site.annotations``, else ``annotations/`` beside the config
    when it exists, else None."""
    if cfg.site.annotations:
        return cfg.resolve(cfg.site.annotations)
    default = cfg.resolve("annotations")
    return default if default.is_dir() else None


def split_front_matter(text: str) -> tuple[str | None, str, int]:
    """(front matter YAML or None, Markdown body, line number where the body starts)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return None, text, 1
    for n in range(1, len(lines)):
        if lines[n].rstrip() in ("---", "..."):
            return "\n".join(lines[1:n]), "\n".join(lines[n + 1 :]), n + 2
    raise ValueError("the front matter opened by '---' on line 1 is never closed by a '---' line")


def plain_text(
    value, where: str, errors: list[str], limit: int | None = None, fix: str = "shorten it (notes go below)"
) -> str:
    """A front-matter value as one line of text ("" when absent), or an error line in ``errors``."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors.append(f"{where}: expected text, got {type(value).__name__}. Fix: write it as a plain string.")
        return ""
    text = " ".join(str(value).split())
    if limit is not None and len(text) > limit:
        errors.append(f"{where}: {len(text)} characters, at most {limit}. Fix: {fix}.")
    return text


def unknown_keys(keys, valid: tuple[str, ...], where: str, errors: list[str]) -> None:
    """An error line for each key not in ``valid``, with the nearest valid key or the list of them."""
    for key in keys:
        if key not in valid:
            near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f" Did you mean {near[0]!r}?" if near else f" Valid keys: {', '.join(valid)}."
            errors.append(f"{where}: {key}: unknown key.{hint}")


def front_matter_date(value, where: str, errors: list[str]) -> str | None:
    """A front-matter ``date`` as YYYY-MM-DD (YAML may have read it as a date already); None when
    absent, or not a date (with an error line in ``errors``)."""
    if isinstance(value, _dt.datetime):
        value = value.date()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if value is None:
        return None
    text = str(value).strip()
    try:
        ok = bool(_DATE.match(text)) and _dt.date.fromisoformat(text) is not None
    except ValueError:
        ok = False
    if not ok:
        errors.append(f"{where}: {text!r} is not a date. Fix: write YYYY-MM-DD, e.g. 2026-11-20.")
        return None
    return text


def _unit_codes(layers: list[str]) -> re.Pattern:
    names = "|".join(re.escape(n) for n in sorted(layers, key=len, reverse=True))
    return re.compile(rf"(?<![\w/.-])({names})/(f|n)/([0-9]+)(?![\w/])")


def parse_file(path: Path, rel: str, layers: list[str], errors: list[str]) -> Annotation | None:
    """One annotation file, or None (with lines in ``errors``) when it is not valid."""
    parts = rel.split("/")
    n_before = len(errors)
    if (
        len(parts) != 3
        or parts[0] not in layers
        or parts[1] not in KINDS
        or not parts[2].endswith(".md")
        or not _ID.match(parts[2][:-3])
    ):
        hint = ""
        if len(parts) == 3 and parts[0] not in layers:
            near = difflib.get_close_matches(parts[0], layers, n=1, cutoff=0.5)
            hint = f" {parts[0]!r} is not a studied layer" + (f" (did you mean {near[0]!r}?)" if near else "")
            hint += f"; the layers are {', '.join(layers)}."
        elif len(parts) == 3 and parts[1] not in KINDS:
            hint = f" {parts[1]!r} is not a unit kind: f (feature) or n (neuron)."
        errors.append(
            f"{rel}: not the file of a unit.{hint} Fix: name it <layer>/<f|n>/<id>.md, e.g. "
            f"{(layers or ['mixed5b'])[0]}/f/32.md."
        )
        return None
    layer, kind, unit = parts[0], parts[1], int(parts[2][:-3])
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
    meta: dict = {}
    if front is not None:
        try:
            loaded = yaml.safe_load(front)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 2})" if mark else ""
            errors.append(f"{rel}: front matter is not valid YAML{where}: {getattr(exc, 'problem', exc)}.")
            return None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            errors.append(f"{rel}: front matter must be a mapping of keys ({', '.join(KEYS)}).")
            return None
        meta = loaded
    unknown_keys(meta, KEYS, rel, errors)
    label = plain_text(meta.get("label"), f"{rel}: label", errors, MAX_LABEL)
    tags_raw = meta.get("tags")
    tags: list[str] = []
    if tags_raw is not None:
        if isinstance(tags_raw, str):
            tags_raw = [t for t in tags_raw.split(",")]
        if not isinstance(tags_raw, list):
            errors.append(f"{rel}: tags: expected a list of words, e.g. [birds, heads].")
            tags_raw = []
        for j, tag in enumerate(tags_raw):
            t = plain_text(tag, f"{rel}: tags[{j}]", errors, MAX_TAG).lower()
            if t and not _TAG.match(t):
                errors.append(
                    f"{rel}: tags[{j}]: {t!r} has characters a tag cannot have. "
                    "Fix: use letters, digits, spaces, '-' and '_'."
                )
            elif t and t not in tags:
                tags.append(t)
    confidence = meta.get("confidence")
    if confidence is not None and str(confidence).lower() not in CONFIDENCE:
        errors.append(f"{rel}: confidence: {confidence!r} is not one of {', '.join(CONFIDENCE)}.")
        confidence = None
    author = plain_text(meta.get("author"), f"{rel}: author", errors, 200)
    date = front_matter_date(meta.get("date"), f"{rel}: date", errors)
    notes = body.strip("\n")
    linked: dict[tuple[str, str, int], None] = {}
    render_notes(notes, layers, lambda L, k, u: linked.setdefault((L, k, u)) or "")
    links = tuple(linked)
    if len(errors) > n_before:
        return None
    return Annotation(
        layer=layer,
        kind=kind,
        unit=unit,
        path=rel,
        sha256=hashlib.sha256(data).hexdigest(),
        label=label,
        tags=tuple(tags),
        confidence=str(confidence).lower() if confidence is not None else "",
        author=author,
        date=date or "",
        notes=notes,
        links=links,
    )


def markdown_files(folder: Path) -> list[tuple[Path, str]]:
    """(path, path relative to ``folder``) of every ``.md`` file below it, in path order; README.md
    and hidden files and folders are skipped."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or not p.is_file():
            continue
        if p.suffix.lower() == ".md" and p.name.lower() != "readme.md":
            out.append((p, rel))
    return out


def files_identity(folder: Path | None) -> dict | None:
    """Content hash of every Markdown file under ``folder`` (relative path -> sha256); None without any."""
    if folder is None or not Path(folder).is_dir():
        return None
    return {
        rel: hashlib.sha256(p.read_bytes()).hexdigest() for p, rel in markdown_files(Path(folder))
    } or None


def load_annotations(folder: Path | None, layers: list[str]) -> list[Annotation]:
    """Every annotation under ``folder`` (``.md`` files; README.md and hidden files are skipped), in
    path order. Raises AnnotationError listing every problem of every file."""
    if folder is None:
        return []
    folder = Path(folder)
    if not folder.is_dir():
        raise AnnotationError(
            [
                f"site.annotations: {str(folder)!r} is not a folder. Fix: create it, or point "
                "site.annotations at the folder of <layer>/<f|n>/<id>.md files."
            ]
        )
    errors: list[str] = []
    out = [a for p, rel in markdown_files(folder) if (a := parse_file(p, rel, layers, errors)) is not None]
    if errors:
        raise AnnotationError([f"annotations/{e}" if not e.startswith("site.") else e for e in errors])
    return out


def check_units(annotations: list[Annotation], counts: dict[tuple[str, str], int]) -> list[str]:
    """Error lines for annotations (and their notes' links) naming a unit the layer does not have.
    ``counts`` maps (layer, kind) -> number of units; a missing entry is not checked."""
    errors = []
    for a in annotations:
        n = counts.get((a.layer, a.kind))
        what = "feature" if a.kind == "f" else "neuron"
        if n is not None and a.unit >= n:
            errors.append(
                f"annotations/{a.path}: {a.code} is not a unit: {a.layer} has {n} {what}s (ids 0 "
                f"to {n - 1}). "
                "Fix: rename the file to an existing id, or remove it."
            )
        for layer, kind, unit in a.links:
            m = counts.get((layer, kind))
            if m is not None and unit >= m:
                errors.append(
                    f"annotations/{a.path}: notes link to {layer}/{kind}/{unit}, which is not a unit "
                    f"({layer} has {m} {'features' if kind == 'f' else 'neurons'}). Fix: correct the id."
                )
    return errors


def identity(folder: Path | None) -> dict | None:
    """Content hash of every annotation file (path -> sha256): the site stage's input; None without any."""
    return files_identity(folder)


# ---------------------------------------------------------------- rendering the notes


_MD = None


def _markdown():
    """markdown-it (CommonMark) with raw HTML off and images off; links checked by validateLink."""
    global _MD
    if _MD is None:
        from markdown_it import MarkdownIt

        md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        md.disable(["image", "html_block", "html_inline"])
        default_validate = md.validateLink

        def validate(url: str) -> bool:
            u = url.strip().lower()
            if re.match(r"^[a-z][a-z0-9+.-]*:", u) and not u.startswith(("http:", "https:", "mailto:")):
                return False
            return default_validate(url)

        md.validateLink = validate
        _MD = md
    return _MD


def _link_tokens(href: str, text: str) -> list:
    from markdown_it.token import Token

    open_ = Token("link_open", "a", 1, attrs={"href": href})
    body = Token("text", "", 0, content=text)
    close = Token("link_close", "a", -1)
    for t in (open_, body, close):
        t.level = 0
    return [open_, body, close]


def render_notes(notes: str, layers: list[str], href_of) -> str:
    """The notes as safe HTML: Markdown without raw HTML; unit ids (``mixed5b/f/32``, as text or as a
    link target) become links to ``href_of(layer, kind, id)``."""
    md = _markdown()
    codes = _unit_codes(layers)
    whole = re.compile(rf"^(?:{codes.pattern})$")
    env: dict = {}
    tokens = md.parse(notes, env)
    for block in tokens:
        if block.type != "inline" or not block.children:
            continue
        out, in_link = [], 0
        for tok in block.children:
            if tok.type == "link_open":
                in_link += 1
                m = whole.match(tok.attrGet("href") or "")
                if m:
                    tok.attrSet("href", href_of(m.group(1), m.group(2), int(m.group(3))))
            elif tok.type == "link_close":
                in_link -= 1
            if tok.type != "text" or in_link:
                out.append(tok)
                continue
            pos, text = 0, tok.content
            for m in codes.finditer(text):
                if m.start() > pos:
                    out.append(_text(text[pos : m.start()]))
                out += _link_tokens(href_of(m.group(1), m.group(2), int(m.group(3))), m.group(0))
                pos = m.end()
            if pos == 0:
                out.append(tok)
            elif pos < len(text):
                out.append(_text(text[pos:]))
        block.children = out
    return md.renderer.render(tokens, md.options, env)


def _text(content: str):
    from markdown_it.token import Token

    return Token("text", "", 0, content=content)


def notes_text(notes: str) -> str:
    """The notes' words without Markdown syntax (the search index)."""
    md = _markdown()
    words = []
    for block in md.parse(notes):
        if block.type == "inline" and block.children:
            words += [t.content for t in block.children if t.type in ("text", "code_inline")]
        elif block.type in ("code_block", "fence"):
            words.append(block.content)
    return " ".join(" ".join(words).split())


# ---------------------------------------------------------------- a new file for `atlasgen annotate`


def parse_unit(text: str, model: str, layers: list[str]) -> tuple[str, str, int]:
    """``mixed5b/f/32`` (or ``<model>/mixed5b/f/32``, or a page URL ending in ``/index.html``) as
    (layer, kind, id); ValueError with the fix otherwise."""
    t = text.strip().strip("/")
    if t.endswith("/index.html"):
        t = t[: -len("/index.html")]
    parts = t.split("/")
    if len(parts) >= 4 and parts[-4] == model:
        parts = parts[-3:]
    elif len(parts) > 3:
        parts = parts[-3:]
    if len(parts) != 3 or parts[1] not in KINDS or not _ID.match(parts[2]):
        raise ValueError(f"{text!r} is not a unit id. Fix: write <layer>/<f|n>/<id>, e.g. {layers[0]}/f/32.")
    if parts[0] not in layers:
        near = difflib.get_close_matches(parts[0], layers, n=1, cutoff=0.5)
        raise ValueError(
            f"{text!r}: {parts[0]!r} is not a studied layer"
            + (f" (did you mean {near[0]!r}?)" if near else "")
            + f"; the layers are {', '.join(layers)}."
        )
    return parts[0], parts[1], int(parts[2])


def new_file_text(code: str, facts: list[str]) -> str:
    """A new annotation file: empty keys to fill in, and the unit's current facts as YAML comments
    (comments are not part of the annotation; the site shows the facts itself)."""
    lines = ["---", f"# {code}: what the atlas computed when this file was made"]
    lines += [f"#   {f}" for f in facts]
    lines += [
        "# Every key is optional; delete the ones you do not use. docs/annotations.md explains them.",
        "label:  # your label; the pages show it before the automatic one",
        "tags: []",
        "confidence:  # low, medium or high",
        "author:",
        "date:  # YYYY-MM-DD",
        "---",
        "",
        "Notes in Markdown. Unit ids such as " + code + " become links to their pages.",
        "",
    ]
    return "\n".join(lines)
