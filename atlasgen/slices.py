"""Config slices: the part of the config that feeds each stage's key.

A stage declares its slice by name (``Stage.config``): a dotted path into the config, or one
of the derived slices below. The runner computes them; stages never import this module, so a
change here re-keys nothing by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from atlasgen.cache import hash_file, hash_tree
from atlasgen.config import Config, to_dict
from atlasgen.stage import Stage


def _content_sha256(path: Path) -> str:
    """Content hash of a weights file, or of every file in a weights folder."""
    return hash_tree(path, exclude=()) if path.is_dir() else hash_file(path)


def _weights_identity(cfg: Config) -> Any:
    if not cfg.model.weights:
        return None
    path = cfg.resolve(cfg.model.weights)
    return {"file": path.name, "sha256": _content_sha256(path)}


def _hierarchy_identity(cfg: Config) -> Any:
    """Content hash of the class hierarchy file (map.hierarchy), if one is given."""
    return hash_file(cfg.resolve(cfg.map.hierarchy)) if cfg.map.hierarchy else None


def _layers(cfg: Config, with_sae: bool = False) -> list:
    """The layers' slice; with the SAE settings, plus the content hash of any SAE weights loaded."""
    out = []
    for layer in cfg.layers:
        entry: dict[str, Any] = {"name": layer.name}
        if layer.module or layer.channels or layer.tokens != "patches" or layer.prefix_tokens != -1:
            entry["view"] = {
                "module": layer.module,
                "channels": layer.channels,
                "tokens": layer.tokens,
                "prefix_tokens": layer.prefix_tokens,
            }
        if with_sae:
            entry["sae"] = to_dict(layer.sae)
            if layer.sae.weights:
                entry["sae_weights_sha256"] = _content_sha256(cfg.resolve(layer.sae.weights))
        out.append(entry)
    return out


def _layer_featurevis(cfg: Config) -> dict:
    """Each layer's own feature-visualisation keys (layers[].featurevis), for the layers that set any."""
    out = {}
    for layer in cfg.layers:
        own = {k: v for k, v in to_dict(layer.featurevis).items() if v is not None}
        if own:
            out[layer.name] = own
    return out


def _layer_importance(cfg: Config) -> dict:
    """Each layer's own image count for importance (layers[].importance.images), for the layers that set
    it."""
    return {
        layer.name: layer.importance.images for layer in cfg.layers if layer.importance.images is not None
    }


def _annotations_identity(cfg: Config) -> Any:
    from atlasgen.annotations import annotations_dir, identity

    return identity(annotations_dir(cfg))


def _collections_identity(cfg: Config) -> Any:
    from atlasgen.unit_collections import collections_dir, identity

    return identity(collections_dir(cfg))


def _ratings_identity(cfg: Config) -> Any:
    from atlasgen.ratings import ratings_identity

    return ratings_identity(cfg)


# Derived slices, what a stage's key needs beyond plain config values: name -> (key in the
# stage's inputs, value).
SLICES: dict[str, tuple[str, Callable[[Config], Any]]] = {
    "layers": ("layers", _layers),  # each layer's name and view
    "layers_with_sae": ("layers", lambda c: _layers(c, with_sae=True)),  # + SAE settings, weights' hash
    "layer_names": ("layers", lambda c: [layer.name for layer in c.layers]),
    "layer_featurevis": ("layer_featurevis", _layer_featurevis),  # layers[].featurevis overrides
    "layer_importance": ("layer_importance", _layer_importance),  # layers[].importance overrides
    "layers_without_atlas": (
        "without_atlas",
        lambda c: [layer.name for layer in c.layers if not layer.atlas],
    ),
    "model_weights": ("weights", _weights_identity),  # content hash of model.weights
    "map_hierarchy": ("hierarchy", _hierarchy_identity),  # content hash of map.hierarchy
    "ratings_merged": ("ratings_merged", _ratings_identity),  # content hash of the imported ratings
    "annotations": ("annotations", _annotations_identity),  # content hash of each annotation file
    "collections": ("collections", _collections_identity),  # content hash of each collection file
}


def config_slice(stage: Stage, cfg: Config) -> dict:
    """The part of the config that feeds a stage's key."""
    return dict(config_value(cfg, name) for name in stage.config)


def config_value(cfg: Config, name: str) -> tuple[str, Any]:
    """One config slice, as (key, value): a SLICES name or a dotted path into the config."""
    if name in SLICES:
        key, value_of = SLICES[name]
        return key, value_of(cfg)
    value: Any = cfg
    for part in name.split("."):
        value = getattr(value, part)
    return name, to_dict(value) if hasattr(value, "__dataclass_fields__") else value
