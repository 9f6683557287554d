"""The feature-visualisation section of a unit page: main image, variants and the quality check.

Reads the featurevis artifact (images and ``<family>_quality.npz``) and the
examples artifact's per-unit dataset maximum. The quality arrays carry the
failure marks (``failure``, ``failure_neuron``, ``failure_negative``,
``failure_diverse``: codes of :data:`atlasgen.featurevis_check.REASONS`, 0 for
success) and each unit's median firing activation: a failed main
visualisation is marked on the page, drawn smaller and greyed, and the
dataset examples lead the page instead (``templates/unit.html``); a failed
variant is greyed with its reason as its tooltip; cards grey a failed
thumbnail. Template: ``templates/sections/featurevis.html``.
"""

from __future__ import annotations

import numpy as np

from atlasgen.featurevis_check import REASONS
from atlasgen.site import urls
from atlasgen.site.fmt import fmt_num

FAMILY = {"f": "features", "n": "neurons"}
VARIANTS = (  # (subfolder suffix, file name in the unit folder, title, what it shows)
    ("_neuron", "vis-neuron.webp", "neuron-centred", "maximises the objective at the centre position only"),
    (
        "_negative",
        "vis-negative.webp",
        "negative",
        "minimises the objective: what this unit responds to least",
    ),
)


def _diverse_subs(fv, family: str) -> list[str]:
    return [s for s in fv.available if s.startswith(f"{family}_diverse/")]


def _quality_row(fv, family: str, i: int) -> dict | None:
    q = fv.quality.get(family)
    if q is None:
        return None
    units = q["unit"]
    if i < len(units) and units[i] == i:  # the stage writes rows 0..U-1 in order
        row = i
    else:
        hit = np.flatnonzero(units == i)
        if not hit.size:
            return None
        row = int(hit[0])
    return {k: v[row] for k, v in q.items()}


def failure_codes(fv, kind: str, n_units: int) -> np.ndarray:
    """The main visualisation's failure code of every unit of a family (0: succeeded or not judged)."""
    q = fv.quality.get(FAMILY[kind])
    out = np.zeros(n_units, dtype=np.int8)
    if q is not None and "failure" in q:
        units = np.asarray(q["unit"], dtype=np.int64)
        keep = (units >= 0) & (units < n_units)
        out[units[keep]] = q["failure"][keep]
    return out


def _reason(q: dict | None, key: str, idx: int | None = None) -> str:
    """The failure reason of one image ('' when it succeeded or the artifact has no marks)."""
    if q is None or key not in q:
        return ""
    code = int(q[key] if idx is None else q[key][idx])
    return REASONS[code] if 0 < code < len(REASONS) else ""


def unit_files(fv, kind: str, i: int, folder: str) -> list[tuple[str, str]]:
    """(artifact subfolder, site path) of every variant image of unit ``i`` that exists."""
    family = FAMILY[kind]
    out = []
    for suffix, name, _, _ in VARIANTS:
        if fv.path(family + suffix, i) is not None:
            out.append((family + suffix, f"{folder}/{name}"))
    for sub in _diverse_subs(fv, family):
        if fv.path(sub, i) is not None:
            out.append((sub, f"{folder}/vis-diverse-{sub.rsplit('/', 1)[1]}.webp"))
    return out


def copy_variant_images(w, ix) -> None:
    """Copy the neuron-centred, negative and diverse images into the unit folders."""
    fv, L, m = ix.layer.featurevis, ix.layer, ix.site.model
    for kind, count in (("f", L.n_features), ("n", L.n_neurons)):
        for i in range(count):
            for sub, dest in unit_files(fv, kind, i, urls.unit_dir(m, L.name, kind, i)):
                w.copy(fv.path(sub, i), dest)


def section(ix, kind: str, i: int) -> dict:
    """Context for sections/featurevis.html: variants, diverse set and the quality numbers."""
    L, m = ix.layer, ix.site.model
    fv, family = L.featurevis, FAMILY[kind]
    ex = L.features if kind == "f" else L.neurons
    folder = urls.unit_dir(m, L.name, kind, i)
    q = _quality_row(fv, family, i)
    files = dict(unit_files(fv, kind, i, folder))

    def num(key: str, idx: int | None = None) -> str | None:
        if q is None:
            return None
        v = q[key] if idx is None else q[key][idx]
        return None if not np.isfinite(v) else fmt_num(float(v))

    variants = [
        {
            "title": title,
            "note": note,
            "src": files[family + suffix],
            "objective": num("objective" + suffix),
            "failed": _reason(q, "failure" + suffix),
        }
        for suffix, _, title, note in VARIANTS
        if family + suffix in files
    ]
    diverse = []
    for sub in _diverse_subs(fv, family):
        if sub in files:
            j = int(sub.rsplit("/", 1)[1])
            diverse.append(
                {
                    "src": files[sub],
                    "objective": num("objective_diverse", j),
                    "failed": _reason(q, "failure_diverse", j),
                }
            )
    check = None
    if q is not None:
        own, top = float(q["own_act"]), float(ex.max_act[i])
        other = int(q["other_unit"])
        check = {
            "objective": num("objective"),
            "own_act": fmt_num(own),
            "dataset_max": fmt_num(top),
            "ratio": fmt_num(own / top) if top > 0 else None,
            # Flagged when the optimised image does not drive the unit as hard as its best dataset image;
            # a unit that never fires on the dataset has no top to reach (neither flag applies).
            "dead": top <= 0,
            "reaches": top > 0 and own >= top,
            "other_code": f"{kind}/{other}",
            "other_href": urls.unit(m, L.name, kind, other),
            "other_act": fmt_num(float(q["other_act"])),
            "rank": int(q["rank"]),
            "n_units": ex.n_units,
            "selective": int(q["rank"]) == 1,
            "median": num("median_act") if "median_act" in q else None,
        }
    return {
        "variants": variants,
        "diverse": diverse,
        "check": check,
        "failed": _reason(q, "failure"),
        "unit_noun": "feature" if kind == "f" else "neuron",
    }
