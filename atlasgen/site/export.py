"""Bulk export of a layer: ``data/<model>/<layer>/features.jsonl.gz`` and the SAE weights.

One JSON object per line, one line per feature, in id order; the schema is in
docs/export.md. The gzip stream has no file name and mtime 0, and every number
has fixed precision, so the same artifacts give the same bytes.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

from atlasgen.site import annotated, numbers, urls, weights
from atlasgen.site.fmt import dumps, json_num

N_EXPORT_NEIGHBOURS = 6  # nearest features by decoder cosine (the LayerIndex keeps this many)
N_EXPORT_CLASSES = 10  # classes a feature drives most, and suppresses most
N_EXPORT_NEURONS = 6  # neurons with the largest |W_dec[i, :]|


def features_jsonl_path(m: str, layer_name: str) -> str:
    return f"data/{m}/{layer_name}/features.jsonl.gz"


def sae_dir_path(m: str, layer_name: str) -> str:
    return f"data/{m}/{layer_name}/sae"


def _signed_top(values: np.ndarray, k: int, sign: int) -> list[int]:
    """Indices of the ``k`` largest (sign +1) or most negative (sign -1) values with that sign, ties by
    index."""
    order = np.argsort(-sign * values, kind="stable")[:k]
    return [int(c) for c in order if sign * values[c] > 0]


def _weights(data: dict | None, i: int) -> dict | None:
    """A neighbouring layer's strongest feature weights (circuits/L/upstream|downstream.npz), or None."""
    if data is None:
        return None
    idx, w = data["features_idx"][i], data["features_w"][i]
    rows = [{"id": int(j), "weight": json_num(v)} for j, v in zip(idx, w) if int(j) >= 0 and float(v) != 0]
    rows.sort(key=lambda r: (-r["weight"], r["id"]))
    return {"layer": str(data["info"].get("layer", "")), "weights": rows}


def feature_records(site, ix, images=None, ids=None):
    """Yield one export record (a dict) per SAE feature of ``ix.layer`` (or of ``ids``), in id order."""
    L, ds = ix.layer, ix.dataset
    ex = L.features
    imp = L.importance
    cw = L.class_weights_features
    names = ds.class_names
    if imp is not None:  # the pages' rank: among live features, ties shared, none for a dead feature
        rank, ties = numbers.competition_ranks(imp["features_topk"], ex.density > 0)
    for i in range(L.n_features) if ids is None else ids:
        examples = []
        for j in range(ex.top_idx.shape[1]):
            idx = int(ex.top_idx[i, j])
            if idx < 0:
                continue
            c = int(ds.labels[idx])
            row = {"index": idx, "class": names[c], "class_id": c, "activation": json_num(ex.top_val[i, j])}
            if images is not None:
                row["image"] = images.url(idx)
            examples.append(row)
        w = cw[i] if cw is not None else None
        rec = {
            "id": i,
            "label": ix.labels[i],
            **annotated.annotation_fields(ix, "f", i),
            "url": urls.unit(site.model, L.name, "f", i),
            "density": json_num(ex.density[i]),
            "max_act": json_num(ex.max_act[i]),
            "mean_act": json_num(ex.mean_act[i]),
            "label_entropy": json_num(ex.label_entropy[i]),
            "dead": bool(float(ex.density[i]) <= 0),
            "flags": [f.replace("_", "-") for f in ix.flags["f"][i]],
            "top_classes": [
                {"class": names[int(c)], "class_id": int(c), "share": json_num(s, 4)}
                for c, s in zip(ex.top_classes[i], ex.top_class_weights[i])
                if int(c) >= 0
            ],
            "examples": examples,
            "neighbours": [
                {"id": int(j), "cosine": json_num(c, 4)} for j, c in zip(ix.similar[i], ix.similar_cos[i])
            ],
            "decoder_neurons": [
                {"neuron": int(n), "weight": json_num(L.W_dec[i, int(n)])}
                for n in ix.decoder_neurons[i][:N_EXPORT_NEURONS]
            ],
            "class_weights": None
            if w is None
            else {
                "drives": [
                    {"class": names[c], "class_id": c, "weight": json_num(w[c])}
                    for c in _signed_top(w, N_EXPORT_CLASSES, +1)
                ],
                "suppresses": [
                    {"class": names[c], "class_id": c, "weight": json_num(w[c])}
                    for c in _signed_top(w, N_EXPORT_CLASSES, -1)
                ],
            },
        }
        if ex.topk_classes is not None:
            rec["top_examples_classes"] = [
                {"class": names[int(c)], "class_id": int(c), "share": json_num(s, 4)}
                for c, s in zip(ex.topk_classes[i], ex.topk_class_weights[i])
                if int(c) >= 0
            ]
        if imp is not None:
            rec["importance"] = {
                "top_k": int(imp["features_topk"][i]),
                "top1": int(imp["features_top1"][i]),
                "rank": int(rank[i]) or None,
                "tied_with": int(ties[i]),
            }
        for key, data in (("upstream", L.upstream), ("downstream", L.downstream)):
            got = _weights(data, i)
            if got is not None:
                rec[key] = got
        yield rec


def features_jsonl_gz(site, ix, images=None, ids=None) -> bytes:
    """The gzip-compressed JSON Lines export of one layer (deterministic bytes); ``ids``: of those
    features only."""
    raw = io.BytesIO()
    # filename="" and mtime=0: the gzip header names no file and holds no time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
        for rec in feature_records(site, ix, images, ids):
            gz.write(dumps(rec).encode("utf-8"))
            gz.write(b"\n")
    return raw.getvalue()


def write_layer_export(w, site, ix, sae_folder: Path, images=None) -> None:
    """Write features.jsonl.gz and the SAE of one layer: a SAELens folder (cfg.json,
    sae_weights.safetensors in ``site.sae_dtype``, metrics.json; atlasgen.site.weights)."""
    path = features_jsonl_path(site.model, ix.layer.name)
    target = w.out_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(features_jsonl_gz(site, ix, images))
    dest = sae_dir_path(site.model, ix.layer.name)
    published = weights.published_sae(Path(sae_folder), site.sae_dtype, ix.layer.sae_sha256, ix.layer.name)
    for name, data in sorted(published.items()):
        w.text_bytes(f"{dest}/{name}", data)
