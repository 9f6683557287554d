"""Read the upstream artifacts (docs/artifacts.md) once, into plain arrays.

Every array the renderer needs is loaded here a single time; page builders
only index into these objects. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atlasgen import data
from atlasgen.cache import hash_file
from atlasgen.featurevis_files import drawn_units
from atlasgen.saelens import description_of

# Names that become URL path segments must stay plain so links never need escaping.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Folders the site itself uses next to the layer folders inside <model>/.
RESERVED_LAYER_NAMES = frozenset({"classes", "collections", "try", "index.html"})


def check_segment(kind: str, name: str) -> str:
    """Return ``name`` if it is usable as one URL path segment, else raise."""
    if not _SEGMENT.match(name):
        raise ValueError(f"{kind} name {name!r} must match {_SEGMENT.pattern} to be used in URLs")
    return name


def class_slugs(names: list[str]) -> list[str]:
    """URL slug per class name: lowercase ``[a-z0-9-]``, unique (``-<id>`` added on collision)."""
    base = []
    for i, name in enumerate(names):
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        base.append(slug or f"class-{i}")
    counts: dict[str, int] = {}
    for slug in base:
        counts[slug] = counts.get(slug, 0) + 1
    return [slug if counts[slug] == 1 else f"{slug}-{i}" for i, slug in enumerate(base)]


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Dataset(data.Dataset):
    """The dataset artifact as the renderer reads it (``atlasgen.data.Dataset``), with each class's
    URL slug and the identity of its image list."""

    def image_list_sha256(self) -> str:
        """sha256 of the image list, in index order: the labels, the split and, per image, its path
        relative to the images' common folder (folder and CSV sources) or its pixels (the embedded demo).
        Two builds over the same images in the same order share it, wherever the images are stored."""
        import hashlib

        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.split, dtype=np.uint8).tobytes())
        if self._paths is not None:
            paths = [str(p).replace(os.sep, "/") for p in self._paths]
            base = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0]) if paths else ""
            rel = [p[len(base) :].lstrip("/") if base else p for p in paths]
            h.update(json.dumps(rel, ensure_ascii=False).encode("utf-8"))
        else:
            for start in range(0, len(self._pixels), 1024):
                h.update(np.ascontiguousarray(self._pixels[start : start + 1024]).tobytes())
        return h.hexdigest()

    @functools.cached_property
    def class_slugs(self) -> list[str]:
        return class_slugs(self.class_names)


def load_dataset(folder: Path) -> Dataset:
    return Dataset(folder)


@dataclass
class UnitExamples:
    """examples/L/{features,neurons}.npz: one row per unit."""

    top_idx: np.ndarray  # (U, k) int64, -1 padding
    top_val: np.ndarray  # (U, k) float32
    top_maps: np.ndarray  # (U, k, H, W) float16
    max_act: np.ndarray  # (U,)
    density: np.ndarray  # (U,)
    mean_act: np.ndarray  # (U,)
    hist: np.ndarray  # (U, B) int64
    hist_edges: np.ndarray  # (B+1,) fractions of max_act
    top_classes: np.ndarray  # (U, 3) int64, -1 padding
    top_class_weights: np.ndarray  # (U, 3)
    label_entropy: np.ndarray  # (U,)
    # Added by the spectrum scan; None in artifacts written before it.
    top_pos: np.ndarray | None = None  # (U, k, 2) int16 arg-max (row, col) on the layer grid
    density_position: np.ndarray | None = None  # (U,) fraction of positions where it fires
    mean_act_position: np.ndarray | None = None  # (U,) mean activation over firing positions
    band_idx: np.ndarray | None = None  # (U, bands, r) int64, -1 padding
    band_val: np.ndarray | None = None  # (U, bands, r)
    band_pos: np.ndarray | None = None  # (U, bands, r, 2)
    band_maps: np.ndarray | None = None  # (U, bands, r, H, W) float16
    band_count: np.ndarray | None = None  # (U, bands) images in each band
    band_edges: np.ndarray | None = None  # (bands + 1,) nominal edges relative to the max, descending
    band_edges_rel: np.ndarray | None = None  # (U, bands + 1) edges actually used (snapped to the grid)
    # Labels over the whole range and flags (atlasgen.unitlabels); None in artifacts written before them,
    # where top_classes etc. are the top examples' (topk_* then stays None).
    topk_classes: np.ndarray | None = None  # (U, 3) int64: classes of the top examples alone
    topk_class_weights: np.ndarray | None = None  # (U, 3)
    topk_label_entropy: np.ndarray | None = None  # (U,)
    label_entropy_normalised: np.ndarray | None = None  # (U,) label_entropy / ln K
    flag_dead: np.ndarray | None = None  # (U,) bool
    flag_dense: np.ndarray | None = None
    flag_low_confidence: np.ndarray | None = None
    flag_polysemantic: np.ndarray | None = None
    dense_threshold: float | None = None  # the thresholds the flags were computed with
    label_min_images: int | None = None
    label_max_entropy: float | None = None

    @property
    def n_units(self) -> int:
        return int(self.max_act.shape[0])


_SCALARS = {"dense_threshold": float, "label_min_images": int, "label_max_entropy": float}


def load_examples(path: Path) -> UnitExamples:
    with np.load(path) as z:
        fields = {name: z[name] for name in UnitExamples.__dataclass_fields__ if name in z.files}
    for name, cast in _SCALARS.items():
        if name in fields:
            fields[name] = cast(fields[name])
    return UnitExamples(**fields)


@dataclass
class Featurevis:
    """featurevis/L/: which units have a visualisation and a thumbnail."""

    folder: Path
    available: dict[str, frozenset[int]] = field(default_factory=dict)  # subfolder -> ids
    # "features"/"neurons" -> quality-check arrays (featurevis stage's <family>_quality.npz), when present.
    quality: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def path(self, sub: str, unit: int) -> Path | None:
        if unit in self.available.get(sub, ()):
            return self.folder / sub / f"{unit}.webp"
        return None


def load_featurevis(folder: Path) -> Featurevis:
    folder = Path(folder)
    available = {}
    subs = [
        f"{fam}{suffix}"
        for fam in ("features", "neurons")
        for suffix in ("", "_thumb", "_neuron", "_negative")
    ]
    for fam in ("features", "neurons"):  # diverse sets: <family>_diverse/<k>/<id>.webp
        if (folder / f"{fam}_diverse").is_dir():
            subs += sorted(
                (f"{fam}_diverse/{k}" for k in os.listdir(folder / f"{fam}_diverse") if k.isdigit()),
                key=lambda s: int(s.rsplit("/", 1)[1]),
            )
    for sub in subs:
        available[sub] = drawn_units(folder / sub)
    quality = {}
    for fam in ("features", "neurons"):
        if (folder / f"{fam}_quality.npz").exists():
            with np.load(folder / f"{fam}_quality.npz") as z:
                quality[fam] = {k: z[k] for k in z.files}
    return Featurevis(folder=folder, available=available, quality=quality)


@dataclass
class Layer:
    name: str
    shape: list[int] | None  # [C, H, W] from model.json
    sae_sha256: str
    W_dec: np.ndarray  # (F, C)
    sae_cfg: dict
    sae_metrics: dict
    features: UnitExamples
    neurons: UnitExamples
    class_weights_features: np.ndarray | None  # (F, K); None when classes_skipped
    class_weights_neurons: np.ndarray | None  # (C, K); None when classes_skipped
    circuits_info: dict
    map: dict  # map.json
    featurevis: Featurevis
    similar: np.ndarray  # (F, k) int64: the most similar features by decoder cosine, most similar first
    similar_cos: np.ndarray  # (F, k) float32: their cosines
    # Optional: mean-ablation importance and weights to the neighbouring studied layers.
    importance: dict | None = None  # importance.npz arrays + "info" (importance.json)
    upstream: dict | None = None  # circuits/L/upstream.npz arrays + "info" (upstream.json, names the layer)
    downstream: dict | None = None  # circuits/L/downstream.npz arrays + "info"
    # Why the weights to the layer below / above could not be computed: {"layer", "reason"} or None.
    upstream_skipped: dict | None = None  # circuits/L/upstream_skipped.json
    downstream_skipped: dict | None = None  # the upstream_skipped of the layer above, naming that layer
    importance_skipped: str = ""  # why importance was not computed (importance/skipped.json), "" when it was
    # why no class weights or class contributions were computed (circuits/classes_skipped.json, a
    # model without class logits), "" when they were
    classes_skipped: str = ""
    # what a layer of token sequences studies, in words (model.json "tokens"), "" for an image map
    tokens: str = ""

    @functools.cached_property
    def class_lift(self) -> dict[str, np.ndarray | None]:
        """ "features"/"neurons" -> (U, K) each unit's lift on each class: its mean spatially averaged
        activation on the class's images over its mean on all the images the class contributions were
        computed on (the classes' means weighted by their image counts); 0 where that mean is not
        positive. None without class contributions. A unit that fires only on one class of K balanced
        classes has lift K. Computed once per layer: every class page reads it."""
        out: dict[str, np.ndarray | None] = {}
        for kind in ("features", "neurons"):
            C = self.contributions
            if C is None or f"{kind}_mean" not in C:
                out[kind] = None
                continue
            mc = np.asarray(C[f"{kind}_mean"], dtype=np.float64)
            n = np.asarray(C["images"], dtype=np.float64)
            m = (mc * n[None]).sum(1) / max(float(n.sum()), 1.0)
            out[kind] = np.divide(mc, m[:, None], out=np.zeros_like(mc), where=(m[:, None] > 0) & (mc > 0))
        return out

    cooccurrence: dict | None = None  # examples/L/cooccurrence.npz arrays, if present
    # circuits/L/class_contributions.npz arrays + "info": each unit's contribution to every class logit on
    # the class's images; None in artifacts written without it (class pages then rank by weight).
    contributions: dict | None = None
    atlas: dict = field(default_factory=dict)  # atlas.json of the activation atlas; {} when not built
    atlas_dir: Path | None = None
    sae_dir: Path | None = None  # the sae artifact's layer folder (sae.npz, saelens/)
    # what the SAE is and where it came from (atlasgen.saelens.describe)
    sae_description: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.W_dec.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.W_dec.shape[1])

    def feature_label(self, i: int) -> str:
        return self._labels.get(i, "")

    def __post_init__(self):
        self._labels = {int(f["id"]): str(f.get("label") or "") for f in self.map.get("features", [])}


def _optional_npz(stem: Path) -> dict | None:
    """``stem.npz`` arrays plus ``info`` from ``stem.json``, or None when the files are absent."""
    npz = stem.with_suffix(".npz")
    if not npz.exists():
        return None
    with np.load(npz) as z:
        out = {k: np.asarray(z[k]) for k in z.files}
    js = stem.with_suffix(".json")
    out["info"] = _read_json(js) if js.exists() else {}
    return out


def _load_npz(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {name: z[name] for name in z.files}


def _optional_json(path: Path) -> dict | None:
    return _read_json(path) if path.is_file() else None


def load_layer(artifacts: dict[str, Path], name: str, model_info: dict) -> Layer:
    sae_dir = Path(artifacts["sae"]) / name
    with np.load(sae_dir / "sae.npz") as z:
        W_dec = np.asarray(z["W_dec"], dtype=np.float32)
        threshold = np.asarray(z["threshold"], dtype=np.float32)
    sae_cfg = _read_json(sae_dir / "cfg.json") if (sae_dir / "cfg.json").exists() else {}
    with np.load(Path(artifacts["similar"]) / name / "similar.npz") as z:
        similar, similar_cos = np.asarray(z["ids"]), np.asarray(z["cos"])
    features = load_examples(Path(artifacts["examples"]) / name / "features.npz")
    neurons = load_examples(Path(artifacts["examples"]) / name / "neurons.npz")
    classes_skipped = (_optional_json(Path(artifacts["circuits"]) / "classes_skipped.json") or {}).get(
        "reason", ""
    )
    cw_features = cw_neurons = None
    if not classes_skipped:
        with np.load(Path(artifacts["circuits"]) / name / "class_weights.npz") as z:
            cw_features = np.asarray(z["features"], dtype=np.float32)
            cw_neurons = np.asarray(z["neurons"], dtype=np.float32)
    circuits_json = Path(artifacts["circuits"]) / name / "circuits.json"
    layer = Layer(
        name=name,
        shape=(model_info.get("layers") or {}).get(name),
        sae_sha256=hash_file(sae_dir / "sae.npz"),
        sae_dir=sae_dir,
        W_dec=W_dec,
        sae_cfg=sae_cfg,
        sae_description=description_of(sae_cfg, {"W_dec": W_dec, "threshold": threshold}) if sae_cfg else {},
        sae_metrics=_read_json(sae_dir / "metrics.json") if (sae_dir / "metrics.json").exists() else {},
        features=features,
        neurons=neurons,
        class_weights_features=cw_features,
        class_weights_neurons=cw_neurons,
        classes_skipped=classes_skipped,
        tokens=str((model_info.get("tokens") or {}).get(name, "")),
        circuits_info=_read_json(circuits_json) if circuits_json.exists() else {},
        map=_read_json(Path(artifacts["map"]) / name / "map.json"),
        featurevis=load_featurevis(Path(artifacts["featurevis"]) / name),
        similar=similar,
        similar_cos=similar_cos,
        importance=_optional_npz(Path(artifacts["importance"]) / name / "importance")
        if "importance" in artifacts
        else None,
        upstream=_optional_npz(Path(artifacts["circuits"]) / name / "upstream"),
        downstream=_optional_npz(Path(artifacts["circuits"]) / name / "downstream"),
        contributions=_optional_npz(Path(artifacts["circuits"]) / name / "class_contributions"),
        upstream_skipped=_optional_json(Path(artifacts["circuits"]) / name / "upstream_skipped.json"),
        importance_skipped=(
            (_optional_json(Path(artifacts["importance"]) / "skipped.json") or {}).get("reason", "")
            if "importance" in artifacts
            else ""
        ),
        cooccurrence=_load_npz(Path(artifacts["examples"]) / name / "cooccurrence.npz"),
    )
    if "atlas" in artifacts and (Path(artifacts["atlas"]) / name / "atlas.json").exists():
        layer.atlas_dir = Path(artifacts["atlas"]) / name
        layer.atlas = _read_json(layer.atlas_dir / "atlas.json")
    F, C = W_dec.shape
    checks = {
        "examples features rows": (features.n_units, F),
        "examples neurons rows": (neurons.n_units, C),
    }
    if cw_features is not None:
        checks["class_weights features rows"] = (cw_features.shape[0], F)
        checks["class_weights neurons rows"] = (cw_neurons.shape[0], C)
    for what, (got, want) in checks.items():
        if got != want:
            raise ValueError(f"layer {name}: {what} = {got}, expected {want} (sae.npz W_dec is {F}x{C})")
    return layer


@dataclass
class Artifacts:
    dataset: Dataset
    model_info: dict
    layers: list[Layer]

    @property
    def classes_skipped(self) -> str:
        """Why the class analyses were not computed ("" when they were): the same for every layer."""
        return next((L.classes_skipped for L in self.layers if L.classes_skipped), "")


def load_artifacts(artifacts: dict[str, Path], layers: list[str]) -> Artifacts:
    """Load every artifact the site needs, once."""
    missing = {"dataset", "model", "sae", "featurevis", "examples", "circuits", "map"} - set(artifacts)
    if missing:
        raise ValueError(f"artifacts missing stages: {sorted(missing)}")
    dataset = load_dataset(Path(artifacts["dataset"]))
    model_info = _read_json(Path(artifacts["model"]) / "model.json")
    for name in layers:
        check_segment("layer", name)
        if name in RESERVED_LAYER_NAMES:
            raise ValueError(f"layer name {name!r} collides with a site folder")
    if len(set(layers)) != len(layers):
        raise ValueError(f"duplicate layer names: {layers}")
    loaded = [load_layer(artifacts, name, model_info) for name in layers]
    by_name = {layer.name: layer for layer in loaded}
    for layer in loaded:
        skipped = layer.upstream_skipped
        if skipped and skipped.get("layer") in by_name:
            by_name[skipped["layer"]].downstream_skipped = {
                "layer": layer.name,
                "reason": skipped.get("reason", ""),
            }
    for layer in loaded:
        if (
            layer.class_weights_features is not None
            and layer.class_weights_features.shape[1] != dataset.n_classes
        ):
            raise ValueError(
                f"layer {layer.name}: class_weights has {layer.class_weights_features.shape[1]} classes, "
                f"dataset.json has {dataset.n_classes}"
            )
    return Artifacts(dataset=dataset, model_info=model_info, layers=loaded)
