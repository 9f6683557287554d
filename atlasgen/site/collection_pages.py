"""Collections (atlasgen.unit_collections) on the site: their pages, the links to them, their export.

A collection page (``<model>/collections/<slug>/index.html``) shows the prose, then each member as a
card with the collection's sentence about it, in the file's order; a circuit collection draws the
weights between its two layers' members (atlasgen.site.circuits.collection_circuit). Unit pages list
the collections that hold them; the home page lists every collection.
"""

from __future__ import annotations

import re

from markupsafe import Markup

from atlasgen.annotations import notes_text, render_notes
from atlasgen.site import circuits, numbers, urls
from atlasgen.site.context import base_context, citation_pins, crumbs
from atlasgen.site.fmt import bibtex_escape, fmt_count
from atlasgen.unit_collections import Collection, CollectionError


def attach(indexes: dict, collections) -> None:
    """Give each LayerIndex ``collections``: (kind, id) -> [(slug, title)] of the collections holding it,
    in slug order."""
    for ix in indexes.values():
        ix.collections = {}
    for c in collections:
        for m in c.members:
            indexes[m.layer].collections.setdefault((m.kind, m.unit), []).append((c.slug, c.title))


def circuit_pair(c: Collection, layers: list, indexes: dict):
    """(lower layer, upper layer) of a circuit collection: the upper one's ``upstream`` weights come
    from the lower one. CollectionError when the circuits stage has no weights between them."""
    a, b = c.layers()
    by_name = {L.name: L for L in layers}
    for lower, upper in ((a, b), (b, a)):
        up = by_name[upper].upstream
        if up is not None and up["info"].get("layer") == lower and lower in indexes:
            return by_name[lower], by_name[upper]
    skipped = next(
        (
            by_name[u].upstream_skipped
            for u in (a, b)
            if by_name[u].upstream_skipped and by_name[u].upstream_skipped.get("layer") in (a, b)
        ),
        None,
    )
    why = (
        f"the circuits stage computed no weights between them: {skipped.get('reason', '')}"
        if skipped
        else "layer-to-layer weights exist only between consecutive studied layers that are whole "
        "module outputs, and these two are not such a pair"
    )
    raise CollectionError(
        [
            f"collections/{c.path}: circuit: no weights between {a} and {b} to draw: {why.rstrip('.')}. "
            "Fix: choose units of two consecutive studied layers, or remove circuit."
        ]
    )


def check(collections, layers: list, indexes: dict) -> None:
    """Raise CollectionError for circuit collections the artifacts cannot draw (no weights between the two
    layers, or none between these units among the stored strongest partners)."""
    errors = []
    for c in collections:
        if not c.circuit:
            continue
        try:
            lower, upper = circuit_pair(c, layers, indexes)
        except CollectionError as exc:
            errors += exc.errors
            continue
        if not circuits.collection_edges(c, lower, upper):
            k = int(upper.upstream["info"].get("top_k") or upper.upstream["features_idx"].shape[1] // 2)
            errors.append(
                f"collections/{c.path}: circuit: none of its {lower.name} units is among the {k} strongest "
                f"partners (either sign) of its {upper.name} units, nor the other way round, so there is no "
                "weight to draw. Fix: pick partners from the units' weight lists, raise circuits.top_k, "
                "or remove circuit."
            )
    if errors:
        raise CollectionError(errors)


def _members(site, indexes: dict, c: Collection, root: str, layers: list[str]) -> list[dict]:
    out = []
    for m in c.members:
        ix = indexes[m.layer]
        card = (ix.feature_cards if m.kind == "f" else ix.neuron_cards)[m.unit]
        out.append(
            {
                "card": {**card, "code": m.code},
                "note": Markup(_inline(m.note, layers, site, root)) if m.note else "",
            }
        )
    return out


def _inline(markdown: str, layers: list[str], site, root: str) -> str:
    """A note as HTML without its enclosing paragraph (one sentence beside a card)."""
    html = render_notes(markdown, layers, lambda L, k, u: root + urls.unit(site.model, L, k, u)).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]
    return html


def citation(site, arts, c: Collection) -> dict:
    """Permalink, BibTeX and plain text for a collection page: named by its slug and title, pinned by the
    file's content hash, the SAE hashes of its layers, the model weights and the dataset."""

    path = urls.collection(site.model, c.slug)
    permalink = site.permalink(path)
    year = (c.date or site.date)[:4]
    key = re.sub(r"[^A-Za-z0-9]+", "-", f"{site.title}-{site.model}-collection-{c.slug}").strip("-").lower()
    layers = {L.name: L for L in arts.layers}
    pins = [f"collection file sha256:{c.sha256}"]
    pins += [f"SAE of {name} sha256:{layers[name].sae_sha256}" for name in c.layers()]
    pins += citation_pins(site)
    authors = [c.author] if c.author else list(site.authors)
    name = f"{c.title} (collection {site.model}/{c.slug})"
    bibtex = "\n".join(
        [
            f"@misc{{{key},",
            *([f"  author       = {{{bibtex_escape(' and '.join(authors))}}},"] if authors else []),
            f"  title        = {{{{{bibtex_escape(name)}}}}},",
            f"  howpublished = {{{bibtex_escape(site.title)}, \\url{{{permalink}}}}},",
            *([f"  url          = {{{permalink}}},"] if site.base_url else []),
            f"  year         = {{{bibtex_escape(year)}}},",
            f"  note         = {{{len(c.members)} units; {bibtex_escape('; '.join(pins))}; "
            f"version of {bibtex_escape(c.date or site.date)}}}",
            "}",
        ]
    )
    by = f"{', '.join(authors)}. " if authors else ""
    plain = f"{by}\u201c{name}.\u201d {site.title}, {c.date or site.date}. {permalink} ({'; '.join(pins)})."
    return {
        "permalink": permalink,
        "absolute": bool(site.base_url),
        "sha256": c.sha256,
        "sae": [(name, layers[name].sae_sha256) for name in c.layers()],
        "model_sha256": site.model_sha256,
        "dataset": f"{site.dataset_identity}, {fmt_count(site.dataset_images)} images"
        if site.dataset_identity
        else "",
        "dataset_sha256": site.dataset_sha256,
        "plain": plain,
        "bibtex": bibtex,
    }


def collection_page(site, arts, indexes: dict, c: Collection) -> tuple[str, str, dict]:
    m = site.model
    path = urls.collection(m, c.slug)
    root = urls.root_prefix(path)
    layers = list(indexes)
    circuit = None
    if c.circuit:
        lower, upper = circuit_pair(c, arts.layers, indexes)
        circuit = circuits.collection_circuit(root, c, lower, upper, indexes)
    prose = render_notes(c.prose, layers, lambda L, k, u: root + urls.unit(m, L, k, u)) if c.prose else ""
    ctx = base_context(
        site,
        path,
        c.title,
        crumbs(site, (m, urls.model(m)), ("collections", urls.home() + "#collections"), (c.title, None)),
        collection=c,
        prose=Markup(prose),
        members=_members(site, indexes, c, root, layers),
        n_layers=len(c.layers()),
        circuit=circuit,
        cite=citation(site, arts, c),
        density_href=numbers.glossary_href("density"),
        source=c.path,
        description=c.description,
        body_class="collection",
    )
    return path, "collection.html", ctx


def home_list(site, collections) -> list[dict]:
    """The home page's list of collections, in slug order."""
    return [
        {
            "title": c.title,
            "href": urls.collection(site.model, c.slug),
            "description": c.description,
            "n_units": len(c.members),
            "circuit": c.circuit,
            "author": c.author,
        }
        for c in collections
    ]


def unit_links(site, ix, kind: str, i: int) -> list[dict]:
    """The collections a unit page names ("In collections: ..."), in slug order."""
    return [
        {"title": title, "href": urls.collection(site.model, slug)}
        for slug, title in getattr(ix, "collections", {}).get((kind, i), ())
    ]


def export(site, collections) -> dict:
    """data/<model>/collections.json: every collection with its members in order (docs/export.md)."""
    return {
        "model": site.model,
        "collections": [
            {
                "slug": c.slug,
                "url": urls.collection(site.model, c.slug),
                "title": c.title,
                "description": c.description or None,
                "author": c.author or None,
                "date": c.date or None,
                "circuit": c.circuit,
                "prose": c.prose,
                "prose_text": notes_text(c.prose),
                "units": [
                    {
                        "unit": mem.code,
                        "url": urls.unit(site.model, mem.layer, mem.kind, mem.unit),
                        "note": mem.note,
                    }
                    for mem in c.members
                ],
                "source": c.path,
                "sha256": c.sha256,
            }
            for c in collections
        ],
    }


def search_entries(site, collections) -> list[list[str]]:
    """The search index's collections: [href, title, words of the description, prose and notes]."""
    return [
        [
            urls.collection(site.model, c.slug),
            c.title,
            " ".join(
                x
                for x in [c.description, notes_text(c.prose)] + [notes_text(mem.note) for mem in c.members]
                if x
            ),
        ]
        for c in collections
    ]
