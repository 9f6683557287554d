"""Unit cards (the thumbnail tiles of grids) rendered in Python.

A layer page shows one card per feature and each unit page a dozen, so the
card is the most rendered piece of the site. As a Jinja macro it cost a sixth
of a feature page's render time (benchmarks/bench_render.py
--profile); this function writes the same bytes as a reference macro
(tests/test_render_fast.py compares them) with plain string formatting,
without indentation (the size budget). The part of a card that does
not depend on the shown value is cached per (root, card, pixelated, sortable).
"""

from __future__ import annotations

from markupsafe import Markup, escape

_cache: dict[tuple, tuple[str, str]] = {}
# Flags (atlasgen.unitlabels.FLAGS) as a card names them.
FLAG_SHORT = {"dense": "dense", "low_confidence": "low-confidence", "polysemantic": "polysemantic"}
_CACHE_MAX = 200_000


def _e(value) -> str:
    return str(escape(value))


def _parts(root: str, card: dict, pixelated: bool, sortable: bool) -> tuple[str, str]:
    key = (
        root,
        card["href"],
        card["code"],
        card["thumb"],
        card["label"],
        card["top_class"],
        card["density"],
        card["sort_density"],
        card["sort_max"],
        card["sort_importance"],
        card["dead"],
        card["id"],
        card.get("flags", ()),
        bool(card.get("vis_failed")),
        bool(pixelated),
        bool(sortable),
    )
    hit = _cache.get(key)
    if hit is not None:
        return hit
    head = f'<li class="card{" dead" if card["dead"] else ""}"'
    if sortable:
        imp = card["sort_importance"]
        head += (
            f' data-id="{_e(card["id"])}" data-density="{_e(card["sort_density"])}" '
            f'data-max="{_e(card["sort_max"])}"'
            + (f' data-importance="{_e(imp)}"' if imp else "")
            + (
                f' data-flags="{_e(" ".join(f.replace("_", "-") for f in card["flags"]))}"'
                if card.get("flags")
                else ""
            )
        )
    head += f'><a href="{_e(root)}{_e(card["href"])}">'
    if card["thumb"]:
        # The link's text names the unit, so its thumbnail is decorative (alt=""), unless it failed.
        alt = "visualisation failed" if card.get("vis_failed") else ""
        head += (
            "<img "
            f'class="thumb{" px" if pixelated else ""}{" vis-failed" if card.get("vis_failed") else ""}" '
            f'src="{_e(root)}{_e(card["thumb"])}" alt="{alt}" loading="lazy" width="120" height="120">'
        )
    else:
        head += '<span class="thumb none" role="img" aria-label="no visualisation">no vis</span>'
    head += f"<p><b>{_e(card['code'])}"
    tail = "</b>"
    if card["label"]:
        tail += f"<span>{_e(card['label'])}</span>"
    elif card["top_class"]:
        tail += f'<span class="muted">{_e(card["top_class"])}</span>'
    meta = "never fires" if card["dead"] else _e(card["density"])
    tail += f"<small>{meta}</small>"
    shown = [FLAG_SHORT[f] for f in card.get("flags", ()) if f in FLAG_SHORT]  # "never fires" says dead
    if shown:
        tail += f"<em>{_e(', '.join(shown))}</em>"
    tail += "</p></a></li>"
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = (head, tail)
    return head, tail


def unit_card(root, card: dict, value=None, pixelated=False, sortable=False) -> Markup:
    """One ``<li class="card">`` linking to a unit, with its thumbnail, id, optional value, label and density.

    The text is a ``<p>`` of the id (``<b>``, the value in its ``<i>``), the label (``<span>``), the
    density (``<small>``) and the flags (``<em>``): atlas.css styles them by tag (the size budget; the
    layer page's atlas.js and the game's game.js write the same markup). ``sortable`` adds the sort
    keys the layer page's grid sorts by (``data-id``, ``data-density``, ...); other pages' cards do not
    carry them (the size budget), nor any indentation.
    """
    head, tail = _parts(root, card, pixelated, sortable)
    if value:
        return Markup(f"{head} <i>{_e(value)}</i>{tail}")
    return Markup(head + tail)


def example_item(root, e: dict) -> Markup:
    """One dataset example (``spectrum.example_items``): image, heat-map, crop position, activation and class.

    Rendered three dozen times per unit page, so it is lean (the size
    budget): no indentation, no class names atlas.css can do without; the heat-map is the image box's
    empty ``<i>``, showing its tile of the page's heat-map strip (``--y``, the strip and its size are in
    the page's ``<style>``); the decorative crop is drawn by atlas.js from ``data-crop`` and the image;
    the caption is the activation (``<b>``, its share of the maximum as a tooltip) and the class.
    tests/test_render_fast.py pins these bytes to a reference template. Crisp upscaling of small images
    (``px``) is set on the list.
    """
    # The class is the caption's link right under the image, so the image's text is its index and facet.
    alt = f"dataset image {e['index']}" + (f" ({e['facet']})" if e["facet"] else "")
    return Markup(
        f'<li><div class="ex-img" data-crop="{_e(e["crop"])}">'
        f'<img src="{_e(root)}{_e(e["src"])}" alt="{_e(alt)}"><i style="--y:{_e(e["heat"])}"></i></div>'
        f'<p><b title="{_e(e["rel"])} of max">{_e(e["act"])}</b> '
        f'<a href="{_e(root)}{_e(e["class_href"])}">{_e(e["class_name"])}</a></p></li>'
    )
