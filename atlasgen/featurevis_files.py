"""Which units a featurevis artifact holds an image for: ``featurevis/L/<sub>/<id>.webp``.

Read by the renderer (``site.artifacts.load_featurevis``) and by stages that pick units with a
visualisation (the survey); imports nothing heavy.
"""

from __future__ import annotations

import os
from pathlib import Path


def drawn_units(folder: Path) -> frozenset[int]:
    """The unit ids with an image ``<id>.webp`` in ``folder`` (empty when the folder is absent)."""
    ids = set()
    if Path(folder).is_dir():
        for name in os.listdir(folder):
            stem, _dot, ext = name.partition(".")
            if ext == "webp" and stem.isdigit():
                ids.add(int(stem))
    return frozenset(ids)
