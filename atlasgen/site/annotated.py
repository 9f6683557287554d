"""A unit's annotation (atlasgen.annotations) as the pages and the exports show it."""

from __future__ import annotations

from markupsafe import Markup

from atlasgen.annotations import notes_text, render_notes
from atlasgen.site import urls


def annotation_fields(ix, kind: str, i: int) -> dict:
    """The exports' fields of an annotated unit (none for the others): the automatic label (``label`` itself
    is the label the pages show, the human one when given) and the annotation."""
    out: dict = {}
    a = ix.annotations.get((kind, i))
    if a is not None:
        out["auto_label"] = ix.auto_labels[i] if kind == "f" else ""
        out["annotation"] = {
            "label": a.label,
            "tags": list(a.tags),
            "confidence": a.confidence or None,
            "author": a.author or None,
            "date": a.date or None,
            "notes": a.notes,
            "notes_text": notes_text(a.notes),
            "sha256": a.sha256,
        }
    return out


def annotation_context(site, ix, kind: str, i: int, root: str, layers: list[str]) -> dict | None:
    """The unit page's annotation box: the human label beside the automatic one, tags, confidence, who
    and when, and the notes as sanitised HTML with the ids of units of ``layers`` linked
    (atlasgen.annotations.render_notes)."""
    a = ix.annotations.get((kind, i))
    if a is None:
        return None
    auto = ix.auto_labels[i] if kind == "f" else ""
    notes = render_notes(a.notes, layers, lambda L, k, u: root + urls.unit(site.model, L, k, u))
    return {
        "label": a.label,
        "auto_label": auto if auto != a.label else "",
        "tags": list(a.tags),
        "confidence": a.confidence,
        "author": a.author,
        "date": a.date,
        "notes": Markup(notes),
        "source": a.path,
    }
