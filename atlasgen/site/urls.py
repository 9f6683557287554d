"""The site's URL contract (docs/urls.md), in one place.

Every function returns a path relative to the site root, without a leading
slash, ending in ``index.html`` or a file name. A page prefixes it with
``root_prefix(its own path)`` so links stay relative (file://, any sub-path).
"""

from __future__ import annotations


def home() -> str:
    return "index.html"


def glossary() -> str:
    """Every number the pages show, defined once (a file at the root: no model folder can shadow it)."""
    return "glossary.html"


def model(m: str) -> str:
    return f"{m}/index.html"


def layer(m: str, layer_name: str) -> str:
    return f"{m}/{layer_name}/index.html"


def unit_dir(m: str, layer_name: str, kind: str, unit: int) -> str:
    """Folder of a unit page; ``kind`` is "f" (SAE feature) or "n" (neuron)."""
    return f"{m}/{layer_name}/{kind}/{int(unit)}"


def unit(m: str, layer_name: str, kind: str, unit_id: int) -> str:
    return f"{unit_dir(m, layer_name, kind, unit_id)}/index.html"


def layer_map(m: str, layer_name: str) -> str:
    return f"{m}/{layer_name}/map/index.html"


def class_page(m: str, slug: str) -> str:
    return f"{m}/classes/{slug}/index.html"


def collection(m: str, slug: str) -> str:
    """A collection (``<slug>.md`` of the collections folder): curated units with commentary."""
    return f"{m}/collections/{slug}/index.html"


def collections_data(m: str) -> str:
    """Every collection of the model with its members (the export)."""
    return f"data/{m}/collections.json"


def features_data(m: str, layer_name: str) -> str:
    return f"data/{m}/{layer_name}/features.json"


def rate_url(m: str, layer: str) -> str:
    return f"{m}/{layer}/rate/index.html"


def rate_data_url(m: str, layer: str) -> str:
    return f"{m}/{layer}/rate/survey.js"


def game_url(m: str, layer: str) -> str:
    return f"{m}/{layer}/game/index.html"


def game_data_url(m: str, layer: str) -> str:
    return f"{m}/{layer}/game/rounds.js"


def root_prefix(page_path: str) -> str:
    """``../`` repeated once per folder level of ``page_path``."""
    return "../" * page_path.count("/")


def shorten_links(html: str, page_path: str) -> str:
    """Rewrite the root-prefixed ``href``/``src`` URLs of a page at ``page_path`` to the shortest relative
    path.

    Templates write ``root + path`` (``../../../../demonet/mixed5b/f/5/index.html`` on a feature page);
    this makes it ``../5/index.html``: the same target, still relative (file://, any sub-path), and a
    feature page ~1.5 KB smaller (the size budget). For each folder the page sits in, deepest
    first, the URLs that go up to the root and back down into that folder are cut to the way up to it
    (a plain ``str.replace`` per folder: fast on every page). A shortened URL starts with fewer ``../``
    than the root prefix and a name, so no later, shallower rule can match it again.
    """
    root = root_prefix(page_path)
    if not root:
        return html
    here = page_path.split("/")[:-1]
    depth = len(here)
    for j in range(depth, 0, -1):
        folder = root + "/".join(here[:j]) + "/"
        up = "../" * (depth - j)
        for attr in ('href="', 'src="'):
            html = html.replace(attr + folder, attr + up)
    return html


def try_page(m: str) -> str:
    """The reader's own image through the model and an SAE, in the page (``#layer=L&f=ID`` pins a unit)."""
    return f"{m}/try/index.html"


def try_layer_file(m: str, layer_name: str, name: str) -> str:
    """A file of the try page for one layer: ``graph.js`` (the ONNX graph) or ``units.js``."""
    return f"{m}/try/{layer_name}/{name}"
