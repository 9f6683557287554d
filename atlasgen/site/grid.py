"""The layer page's unit grids: card data for the virtualised grid (``static/atlas.js``).

A layer of 16,384 features and 1,024 neurons cannot put a card per unit in
its HTML (17k cards are about 7 MB and 120k DOM nodes: seconds to load and to
sort). The page instead carries the first ``N_SERVER_CARDS`` cards of each
grid (readable without JavaScript), a ``<noscript>`` list linking every
other unit page (for readers without JavaScript, crawlers and link checkers),
and ``<model>/<layer>/cards.js``: a classic script setting
``window.ATLAS_CARDS`` (works from file://) from which atlas.js draws only
the cards in view, and sorts and filters every unit.

Card data is columnar: one list per field, index = unit id. What a card
shows, sorts by and filters on is declared by the specs next to the
columns, so a new per-unit field is one entry here:

* ``sorts``: ``{"key", "title", "order": "asc"|"desc", "help"}``; the column
  ``key`` holds numbers (null sorts last); ties go by id. ``id`` is implicit.
* ``flags``: ``{"key", "title", "help", "badge"}``; the column holds 0/1.
  A card whose flag is set gets the class ``flag-<key>`` and, when ``badge``,
  a badge with ``title``; the filter menu offers "only" / "without" each flag.
* ``shown``: ``{"key", "title"}``: further values printed on the card's
  meta line as "title value" (numbers or preformatted text; null: omitted).
* ``search``: columns the text filter matches (with the card's code).
* ``cls`` (top class index, -1 none) and ``tags`` (indices into ``choices.tags``, annotated units only):
  the class and tag filters; ``choices.classes`` names the classes.

The filter and sort state is kept in the page's URL fragment (``#features.sort=density&features.flag=+dense
&features.class=3&features.tag=birds&features.q=red``), so a filtered view can be shared.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from atlasgen.site.cards import unit_card

N_SERVER_CARDS = 60  # cards of each grid in the HTML itself: a first screen, and the page without JavaScript
KIND_GRIDS = (("f", "features", "feature"), ("n", "neurons", "neuron"))


def cards_url(m: str, layer_name: str) -> str:
    return f"{m}/{layer_name}/cards.js"


def _num(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


# The unit flags a card can carry (atlasgen.unitlabels.FLAGS, as cards.py shows them), "dead" shown as
# "never fires" on the card itself.
_FLAG_SPECS = (
    ("dead", "dead", "never fires on the scanned images", False),
    ("dense", "dense", "fires on more than the dense threshold of images (glossary: dense)", True),
    ("low_confidence", "low-confidence", "its label rests on few firing images or a spread of classes", True),
    ("polysemantic", "polysemantic", "its activation bands show other classes than its top images", True),
)


def _flags(ix, kind: str, cards: list[dict]) -> list[tuple[dict, list[int]]]:
    """(spec, 0/1 column) of every per-unit flag the layer has, and failed visualisations (greyed)."""
    out = []
    for key, title, help_text, badge in _FLAG_SPECS:
        column = [1 if (c["dead"] if key == "dead" else key in c.get("flags", ())) else 0 for c in cards]
        if key == "dead" or any(column):
            out.append(({"key": key, "title": title, "help": help_text, "badge": badge}, column))
    extra = (  # not flags of the scan: the researcher's annotations, visualisations that failed (greyed)
        (
            "annotated",
            "annotated",
            "has the researcher's annotation",
            lambda c: (kind, c["id"]) in ix.annotations,
        ),
        (
            "vis_failed",
            "failed visualisation",
            "its visualisation does not activate it",
            lambda c: c.get("vis_failed"),
        ),
    )
    for key, title, help_text, has in extra:
        column = [1 if has(c) else 0 for c in cards]
        if any(column):
            out.append(({"key": key, "title": title, "help": help_text, "badge": False}, column))
    return out


def _sorts(ix, kind: str, cards: list[dict]) -> list[tuple[dict, list]]:
    """(spec, numeric column) of every sort key besides id."""
    out = [
        (
            {
                "key": "density",
                "title": "density",
                "order": "desc",
                "help": "fraction of images where it fires anywhere",
            },
            [_num(c["sort_density"]) for c in cards],
        ),
        (
            {"key": "max", "title": "max activation", "order": "desc", "help": "maximum over the dataset"},
            [_num(c["sort_max"]) for c in cards],
        ),
    ]
    if ix.layer.importance is not None:
        top_k = (ix.layer.importance or {}).get("info", {}).get("top_k", 10)
        out.append(
            (
                {
                    "key": "importance",
                    "title": "importance",
                    "order": "desc",
                    "help": f"images that lose the true class from the top {top_k} when the unit is "
                    "mean-ablated",
                },
                [_num(c["sort_importance"]) or 0 for c in cards],
            )
        )
    return out


def _shown(ix, kind: str, cards: list[dict]) -> list[tuple[dict, list]]:
    """(spec, column) of further values printed on each card."""
    return []


def _choices(ix, kind: str, cards: list[dict]) -> tuple[dict, dict]:
    """Filter columns by value, with their choices: the top class of each unit ("cls": a class index, -1
    none) and the annotation tags ("tags": indices into the layer's tag names)."""
    ex = ix.layer.features if kind == "f" else ix.layer.neurons
    top = [int(ex.top_classes[c["id"], 0]) if ex.top_classes.shape[1] else -1 for c in cards]
    notes = ix.annotations if hasattr(ix, "annotations") else {}
    tag_names = sorted({t for (k, _), a in notes.items() if k == kind for t in a.tags})
    number = {t: j for j, t in enumerate(tag_names)}
    tags = [
        [number[t] for t in notes[(kind, c["id"])].tags] if (kind, c["id"]) in notes else [] for c in cards
    ]
    columns = {"cls": top}
    choices: dict = {"classes": ix.dataset.class_names, "tags": tag_names}
    if tag_names:
        columns["tags"] = tags
    return columns, choices


def grid_data(ix, kind: str) -> dict:
    """Card data of one grid (``kind`` "f" or "n"); paths are relative to the layer page."""
    cards = ix.feature_cards if kind == "f" else ix.neuron_cards
    n = len(cards)
    # Thumbnail file of each card, by number: 0 none, k the k-th name of "thumbs" (thumb.webp, or vis.webp
    # where a unit has no thumbnail).
    thumb_names = sorted({c["thumb"].rsplit("/", 1)[-1] for c in cards if c["thumb"]})
    number = {name: k + 1 for k, name in enumerate(thumb_names)}
    columns: dict[str, list] = {
        "label": [c["label"] for c in cards],
        "top": [c["top_class"] for c in cards],
        "meta": ["" if c["dead"] else c["density"] for c in cards],
        "thumb": [number[c["thumb"].rsplit("/", 1)[-1]] if c["thumb"] else 0 for c in cards],
    }
    specs: dict[str, list[dict]] = {
        "sorts": [{"key": "id", "title": "id", "order": "asc", "help": "unit id"}],
        "flags": [],
        "shown": [],
    }
    for group, made in (
        ("sorts", _sorts(ix, kind, cards)),
        ("flags", _flags(ix, kind, cards)),
        ("shown", _shown(ix, kind, cards)),
    ):
        for spec, values in made:
            if len(values) != n:
                raise ValueError(f"card column {spec['key']!r} has {len(values)} values for {n} units")
            specs[group].append(spec)
            columns[spec["key"]] = values
    more, choices = _choices(ix, kind, cards)
    columns.update(more)
    return {
        "kind": kind,
        "choices": choices,
        "kind_name": dict((k, name) for k, _, name in KIND_GRIDS)[kind],
        "n": n,
        "href": kind + "/{id}/index.html",
        "thumb": kind + "/{id}/{file}",
        "thumbs": thumb_names,
        "columns": columns,
        "search": ["label", "top"],
        **specs,
    }


def cards_data(ix) -> dict:
    """``window.ATLAS_CARDS`` of a layer page: both grids."""
    return {"layer": ix.layer.name, "grids": {plural: grid_data(ix, kind) for kind, plural, _ in KIND_GRIDS}}


def grid_context(root: str, ix, kind: str, pixelated: bool) -> dict:
    """What layer.html prints for one grid: the first cards, the links to the rest, the controls."""
    data = grid_data(ix, kind)
    cards = ix.feature_cards if kind == "f" else ix.neuron_cards
    first = cards[:N_SERVER_CARDS]
    rest = [{"id": c["id"], "href": c["href"]} for c in cards[N_SERVER_CARDS:]]
    return {
        "kind": kind,
        "plural": "features" if kind == "f" else "neurons",
        "n": data["n"],
        "cards": [unit_card(root, c, pixelated=pixelated, sortable=True) for c in first],
        "rest": rest,
        "sorts": data["sorts"],
        "flags": data["flags"],
        # Classes some unit has as its top class, and the tags of the annotations: the filter menus.
        "classes": [
            {"index": c, "name": data["choices"]["classes"][c]}
            for c in sorted({c for c in data["columns"]["cls"] if c >= 0})
        ],
        "tags": data["choices"]["tags"],
        "pixelated": bool(pixelated),
    }


def links_html(root: str, rest: list[dict]) -> Markup:
    """The ``<noscript>`` links to units beyond the first cards (compact: the page prints thousands)."""
    return Markup(" ".join(f'<a href="{escape(root)}{escape(r["href"])}">{int(r["id"])}</a>' for r in rest))
