"""Where the Jinja templates and static files live."""

from __future__ import annotations

from pathlib import Path

import atlasgen


def resource_dir(name: str) -> Path:
    """Folder of the shipped resource ``name`` ("templates" or "static").

    An installed wheel ships them inside the package (``atlasgen/templates``);
    a source checkout keeps them at the repository root.
    """
    package_dir = Path(atlasgen.__file__).resolve().parent
    for candidate in (package_dir / name, package_dir.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"atlasgen resource folder {name!r} not found in {package_dir} or {package_dir.parent}"
    )
