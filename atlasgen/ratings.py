"""Blind interpretability ratings (Terekhov 2023, "Are important features more interpretable?").

The survey page of a layer (``<model>/<layer>/rate/index.html``) shows a
shuffled sample of features drawn from groups of the importance ranking (by
default the most important features and the middle of the ranking). For each
feature the rater first sees only its visualisation and answers Q1 (clarity,
1-5) and Q2 (phrases); then its dataset examples appear and they answer Q3
(match with the phrases), Q4 (coherence), Q5 and Q6 (two / three distinct
concepts). The interpretability score is

    I = (q1 * q3 + q4) / 2,  q = (Q - 1) / 4,   I in [0, 1].

This module is the trusted side of that loop: it validates rating files the
page exports (JSON or CSV), merges them from several raters into
``<ratings.path>/ratings.json`` (one record per rater, feature and SAE; a
later answer of the same rater replaces an earlier one, and every imported
file is also kept verbatim under ``imported/``), and computes what the site
shows: mean I and rater count per feature, and per group histograms, means
with bootstrap intervals and importance against I.

Ratings are untrusted input: every field is checked for type, range and
length here, and the templates escape every string.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np

from atlasgen.errors import AtlasgenError

FORMAT = "atlasgen-ratings"
MERGED_FORMAT = "atlasgen-ratings-merged"
VERSION = 1
SCALE_QUESTIONS = ("q1", "q3", "q4", "q5", "q6")
CSV_COLUMNS = (
    "rater",
    "rater_name",
    "model",
    "layer",
    "sae_sha256",
    "feature",
    "q1",
    "q2_phrases",
    "q3",
    "q4",
    "q5",
    "q6",
    "I",
    "answered",
)
MAX_TEXT = 500  # characters of Q2 phrases kept
MAX_NAME = 100
MAX_FILE_BYTES = 20 * 1024 * 1024
_RATER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA = re.compile(r"^[0-9a-f]{16,64}$")
_ANSWERED = re.compile(r"^[0-9T:.+Z-]{0,40}$")
_CSV_GUARD = re.compile(r"^'[=+\-@]")  # the page prefixes such cells with ' against spreadsheet formulas
MERGED_NAME = "ratings.json"


class RatingsError(AtlasgenError):
    headline = "ratings error"


def q(value: int) -> float:
    """Normalised answer: (Q - 1) / 4 in [0, 1]."""
    return (int(value) - 1) / 4.0


def score(q1: int, q3: int, q4: int) -> float:
    """Terekhov's interpretability I = (q1 q3 + q4) / 2."""
    return (q(q1) * q(q3) + q(q4)) / 2.0


# ---------------------------------------------------------------- validation


def _check_record(raw: dict, where: str, errors: list[str]) -> dict | None:
    """One rating as a clean record, or None after appending the problems to ``errors``."""
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected an object with feature, q1..q6, got {type(raw).__name__}")
        return None
    rec: dict = {}
    before = len(errors)
    for key in ("rater", "model", "layer", "sae_sha256"):
        v = raw.get(key)
        if not isinstance(v, str):
            errors.append(f"{where}: {key} must be a string, got {_show(v)}")
            continue
        pattern = {"rater": _RATER, "model": _SEGMENT, "layer": _SEGMENT, "sae_sha256": _SHA}[key]
        if not pattern.match(v):
            errors.append(f"{where}: {key} {_show(v)} is not valid (must match {pattern.pattern})")
        rec[key] = v
    feature = raw.get("feature")
    if isinstance(feature, str) and feature.isdigit():
        feature = int(feature)
    if isinstance(feature, bool) or not isinstance(feature, int) or feature < 0:
        errors.append(f"{where}: feature must be a whole number >= 0, got {_show(raw.get('feature'))}")
    rec["feature"] = feature
    for key in SCALE_QUESTIONS:
        v = raw.get(key)
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v.strip())
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5:
            errors.append(f"{where}: {key} must be an answer 1-5, got {_show(raw.get(key))}")
        rec[key] = v
    for key, limit in (("phrases", MAX_TEXT), ("rater_name", MAX_NAME), ("answered", 40)):
        v = raw.get(key, "")
        if v is None:
            v = ""
        if not isinstance(v, str):
            errors.append(f"{where}: {key} must be text, got {_show(v)}")
            continue
        if len(v) > limit:
            errors.append(f"{where}: {key} is {len(v)} characters, more than {limit}")
        if any(ord(c) < 32 and c not in "\t\n" for c in v):
            errors.append(f"{where}: {key} contains control characters")
        rec[key] = v
    if isinstance(rec.get("answered"), str) and not _ANSWERED.match(rec["answered"]):
        errors.append(f"{where}: answered {_show(rec['answered'])} is not an ISO date-time")
    given = raw.get("I")
    if given not in (None, "") and len(errors) == before:
        try:
            ok = math.isclose(float(given), score(rec["q1"], rec["q3"], rec["q4"]), abs_tol=1e-3)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            errors.append(
                f"{where}: I = {_show(given)} does not match (q1*q3 + q4)/2 of its answers "
                f"({score(rec['q1'], rec['q3'], rec['q4']):.4f}); the file was edited or corrupted"
            )
    return rec if len(errors) == before else None


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_json(text: str, where: str, errors: list[str]) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.append(f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
        return []
    if not isinstance(data, dict):
        errors.append(f"{where}: expected a JSON object exported by a rating page, got {type(data).__name__}")
        return []
    if data.get("format") not in (FORMAT, MERGED_FORMAT):
        errors.append(
            f'{where}: "format" is {_show(data.get("format"))}, expected {FORMAT!r} '
            '(export the file with the rating page\'s "Download JSON" button)'
        )
        return []
    if data.get("version") != VERSION:
        errors.append(
            f"{where}: version {_show(data.get('version'))} is not supported (this atlasgen reads {VERSION})"
        )
        return []
    items = data.get("ratings") if data["format"] == FORMAT else data.get("records")
    if not isinstance(items, list):
        errors.append(f'{where}: "{"ratings" if data["format"] == FORMAT else "records"}" must be a list')
        return []
    common = (
        {k: data.get(k) for k in ("rater", "rater_name", "model", "layer", "sae_sha256")}
        if data["format"] == FORMAT
        else {}
    )
    out = []
    for n, item in enumerate(items):
        merged = {**common, **item} if isinstance(item, dict) else item
        rec = _check_record(merged, f"{where}: ratings[{n}]", errors)
        if rec is not None:
            out.append(rec)
    return out


def _parse_csv(text: str, where: str, errors: list[str]) -> list[dict]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        errors.append(f"{where}: not valid CSV: {exc}")
        return []
    if not rows:
        errors.append(f"{where}: empty CSV file")
        return []
    header = [h.strip() for h in rows[0]]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        errors.append(
            f"{where}: CSV header lacks column(s) {', '.join(missing)} (expected {','.join(CSV_COLUMNS)})"
        )
        return []
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            errors.append(f"{where}: line {n}: {len(row)} cells, the header has {len(header)}")
            continue
        raw = dict(zip(header, row))
        raw["phrases"] = raw.pop("q2_phrases")
        for key in ("phrases", "rater_name"):
            if _CSV_GUARD.match(raw[key]):
                raw[key] = raw[key][1:]
        rec = _check_record(raw, f"{where}: line {n}", errors)
        if rec is not None:
            out.append(rec)
    return out


def read_ratings_file(path: Path) -> list[dict]:
    """Validated records of one exported file (JSON or CSV). Raises RatingsError naming the file and
    problem."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise RatingsError([f"{where}: no such file"])
    if not path.is_file():
        raise RatingsError([f"{where}: not a file"])
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RatingsError(
            [f"{where}: {size} bytes, larger than the {MAX_FILE_BYTES} a ratings file may have"]
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RatingsError(
            [f"{where}: not UTF-8 text (byte {exc.start}); export it again from the rating page"]
        ) from None
    errors: list[str] = []
    is_json = path.suffix.lower() == ".json" or (
        path.suffix.lower() != ".csv" and text.lstrip().startswith("{")
    )
    records = (_parse_json if is_json else _parse_csv)(text, where, errors)
    if not errors and not records:
        errors.append(f"{where}: holds no ratings")
    if not errors:
        seen = set()
        for rec in records:
            key = record_key(rec)
            if key in seen:
                errors.append(
                    f"{where}: feature {rec['feature']} of {rec['layer']} is rated twice by rater "
                    f"{rec['rater']}"
                )
            seen.add(key)
    if errors:
        shown = errors[:20] + (
            [f"{where}: ... and {len(errors) - 20} more problems"] if len(errors) > 20 else []
        )
        raise RatingsError(shown)
    return records


def record_key(rec: dict) -> tuple:
    return (rec["model"], rec["layer"], rec["sae_sha256"], int(rec["feature"]), rec["rater"])


# ---------------------------------------------------------------- the merged store


def ratings_dir(cfg) -> Path:
    return cfg.resolve(cfg.ratings.path)


def merged_path(cfg) -> Path:
    return ratings_dir(cfg) / MERGED_NAME


def ratings_identity(cfg) -> str | None:
    """Content hash of the merged ratings (part of the site stage's inputs), None when there are none."""
    path = merged_path(cfg)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_merged(path: Path) -> list[dict]:
    """Records of the merged store; [] when it does not exist. A damaged store raises RatingsError."""
    path = Path(path)
    if not path.exists():
        return []
    records = read_ratings_file(path)
    return records


def _sorted(records: list[dict]) -> list[dict]:
    return sorted(records, key=record_key)


def merge(existing: list[dict], new: list[dict]) -> tuple[list[dict], dict]:
    """Merge ``new`` into ``existing``: one record per (model, layer, SAE, feature, rater), the later answer
    wins.

    Returns (records, counts) with counts of added, replaced and kept (unchanged or older) records.
    """
    by_key = {record_key(r): r for r in existing}
    counts = {"added": 0, "replaced": 0, "kept": 0}
    for rec in new:
        key = record_key(rec)
        old = by_key.get(key)
        if old is None:
            by_key[key] = rec
            counts["added"] += 1
        elif rec != old and rec.get("answered", "") > old.get("answered", ""):
            by_key[key] = rec
            counts["replaced"] += 1
        else:
            counts["kept"] += 1
    return _sorted(list(by_key.values())), counts


def merged_document(records: list[dict]) -> str:
    clean = [
        {
            k: r[k]
            for k in (
                "model",
                "layer",
                "sae_sha256",
                "feature",
                "rater",
                "rater_name",
                "q1",
                "phrases",
                "q3",
                "q4",
                "q5",
                "q6",
                "answered",
            )
        }
        for r in _sorted(records)
    ]
    for r in clean:
        r["I"] = round(score(r["q1"], r["q3"], r["q4"]), 6)
    doc = {"format": MERGED_FORMAT, "version": VERSION, "records": clean}
    return json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def import_files(cfg, files: list[Path]) -> dict:
    """Validate every file, then merge them all into the store; nothing is written if any file is bad.

    Each imported file is also copied verbatim to ``imported/<sha256[:16]><suffix>``.
    """
    errors: list[str] = []
    parsed: list[tuple[Path, list[dict]]] = []
    model = cfg.model.name
    layers = [layer.name for layer in cfg.layers]
    for f in files:
        try:
            records = read_ratings_file(Path(f))
        except RatingsError as exc:
            errors += exc.errors
            continue
        for rec in records:
            if rec["model"] != model:
                errors.append(f"{f}: rates model {rec['model']!r}, but this config builds {model!r}")
                break
            if rec["layer"] not in layers:
                errors.append(
                    f"{f}: rates layer {rec['layer']!r}, not a layer of this config ({', '.join(layers)})"
                )
                break
        parsed.append((Path(f), records))
    if errors:
        raise RatingsError(errors)
    folder = ratings_dir(cfg)
    store = merged_path(cfg)
    existing = load_merged(store)
    all_new = [r for _, recs in parsed for r in recs]
    records, counts = merge(existing, all_new)
    (folder / "imported").mkdir(parents=True, exist_ok=True)
    for f, _ in parsed:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
        target = folder / "imported" / f"{digest}{f.suffix.lower() or '.json'}"
        if not target.exists():
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(f, tmp)
            tmp.replace(target)
    tmp = store.with_name(store.name + ".tmp")
    tmp.write_text(merged_document(records), encoding="utf-8")
    tmp.replace(store)
    counts.update(
        files=len(parsed), total=len(records), raters=len({r["rater"] for r in records}), path=str(store)
    )
    return counts


# ---------------------------------------------------------------- the survey sample


def feature_importance(
    density: np.ndarray,
    mean_act: np.ndarray,
    class_weights: np.ndarray | None,
    importance: dict | None,
) -> dict:
    """Importance of every feature of a layer: {"values", "rank", "source", "exact"}.

    Reads mean-ablation importance where the importance stage left it
    (``importance["features_topk"]`` and ``["features_rank"]``, rank 1 = most
    important). Without it, a proxy: the feature's linear effect on the
    logits, ||class weights of f|| x its mean activation when firing x its
    density (``class_weights`` (F, K), None without a classifier head),
    documented on the page as a proxy.
    """
    if importance is not None and "features_topk" in importance and "features_rank" in importance:
        return {
            "values": np.asarray(importance["features_topk"], dtype=np.float64),
            "rank": np.asarray(importance["features_rank"], dtype=np.int64),
            "source": "mean-ablation importance (images that lose the true class from the top-k)",
            "exact": True,
        }
    source = "proxy: |class weights| x mean activation x density (mean-ablation importance not built)"
    if class_weights is None:  # a model without class logits: the activation mass alone
        source = "proxy: mean activation x density (no class weights: the model has no classifier head)"
    values = (
        (np.linalg.norm(class_weights.astype(np.float64), axis=1) if class_weights is not None else 1.0)
        * np.asarray(mean_act, dtype=np.float64)
        * np.asarray(density, dtype=np.float64)
    )
    order = np.lexsort((np.arange(len(values)), -values))
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(1, len(values) + 1)
    return {
        "values": values,
        "rank": rank,
        "source": source,
        "exact": False,
    }


def survey_sample(
    rank: np.ndarray, eligible: np.ndarray, groups: list[str], per_group: int, seed: int
) -> list[tuple[int, str]]:
    """(feature, group) pairs, shuffled with ``seed``: disjoint groups cut from the importance ranking.

    ``rank`` is 1 for the most important feature; only ``eligible`` features
    (they fire and have a visualisation) are sampled. With too few eligible
    features every group shrinks to the same smaller size.
    """
    ids = np.flatnonzero(eligible)
    ordered = ids[np.argsort(rank[ids], kind="stable")]
    n = min(per_group, len(ordered) // max(len(groups), 1))
    if n == 0:
        return []
    taken: set[int] = set()
    chosen: list[tuple[int, str]] = []
    rng = np.random.default_rng(seed)
    for group in groups:  # top, middle, bottom first (they are fixed cuts), random last
        if group == "random":
            continue
        if group == "top":
            part = ordered[:n]
        elif group == "bottom":
            part = ordered[len(ordered) - n :]
        else:  # middle: centred on the median of the ranking, clear of the top and bottom cuts
            low = n if "top" in groups else 0
            high = len(ordered) - n if "bottom" in groups else len(ordered)
            start = min(max(low, (len(ordered) - n) // 2), high - n)
            part = ordered[start : start + n]
        for f in part:
            if int(f) in taken:
                raise ValueError(f"survey groups overlap at feature {int(f)}; lower ratings.per_group")
            taken.add(int(f))
            chosen.append((int(f), group))
    if "random" in groups:
        rest = np.array([f for f in ordered if int(f) not in taken], dtype=np.int64)
        for f in rng.choice(rest, size=min(n, len(rest)), replace=False):
            chosen.append((int(f), "random"))
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


# ---------------------------------------------------------------- aggregates the pages show


def per_feature(records: list[dict], model: str, layer: str, sae_sha256: str) -> tuple[dict[int, dict], int]:
    """{feature: {"mean_I", "n", "I": [...], "phrases": [...]}} for this layer's SAE, and how many records are
    for another SAE version of the layer (not shown: their feature ids may mean other features)."""
    out: dict[int, dict] = {}
    other = 0
    for r in records:
        if r["model"] != model or r["layer"] != layer:
            continue
        if r["sae_sha256"] != sae_sha256:
            other += 1
            continue
        d = out.setdefault(int(r["feature"]), {"I": [], "phrases": [], "raters": []})
        d["I"].append(score(r["q1"], r["q3"], r["q4"]))
        d["raters"].append(r["rater"])
        if r["phrases"].strip():
            d["phrases"].append(r["phrases"].strip())
    for d in out.values():
        d["n"] = len(d["I"])
        d["mean_I"] = float(np.mean(d["I"]))
    return out, other


def bootstrap_interval(values, seed: int = 0, n_boot: int = 2000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (deterministic in ``seed``)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    if len(v) == 1:
        return (float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
