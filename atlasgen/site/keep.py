"""The user's files in the site folder: which ones atlasgen wrote, which ones it keeps.

The site marker (``.atlasgen-site``) records, below the site's key, every file the build wrote.
A rebuild renders into a fresh staging folder and carries over every other file of the old site
folder; ``atlasgen clean`` removes the recorded files only. Files named by ``ALWAYS_KEPT`` or by
``site.keep`` (glob patterns, relative to the site folder) are kept even where the build writes a
file of the same name, and may sit in a folder atlasgen has not made yet.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

from atlasgen.cache import SITE_MARKER

# GitHub Pages' custom domain and its switch for Jekyll, a checkout's git data, and the
# well-known folder of domain verification: never removed from the site folder.
ALWAYS_KEPT = ("CNAME", ".nojekyll", ".git", ".gitignore", ".well-known")


def kept_patterns(keep: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
    """ALWAYS_KEPT and the ``site.keep`` entries."""
    return ALWAYS_KEPT + tuple(p.strip("/") for p in keep if p.strip("/"))


def is_kept(relpath: str, patterns: tuple[str, ...]) -> bool:
    """Whether a path relative to the site folder is a kept entry or lies inside one."""
    parts = Path(relpath).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(prefix, p) for prefix in prefixes for p in patterns)


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (links included, not followed), as sorted relative posix paths."""
    folder = Path(folder)
    out = []
    for base, dirs, names in os.walk(folder):
        rel = Path(base).relative_to(folder)
        out += [(rel / n).as_posix() for n in names]
        out += [(rel / d).as_posix() for d in dirs if (Path(base) / d).is_symlink()]
    return sorted(out)


def marker_text(key: str, written: list[str]) -> str:
    lines = [
        "This folder is an atlasgen site; `atlasgen clean` deletes the files listed below and "
        "keeps the rest.",
        f"key: {key}",
        "files:",
    ]
    return "\n".join(lines + [f"  {p}" for p in written]) + "\n"


def recorded_files(site: Path) -> set[str] | None:
    """The files the last build wrote, from the marker; None for a marker without the list."""
    marker = Path(site) / SITE_MARKER
    if not marker.is_file():
        return None
    lines = marker.read_text(encoding="utf-8").splitlines()
    if "files:" not in lines:
        return None
    return {line[2:] for line in lines[lines.index("files:") + 1 :] if line.startswith("  ")}


def user_files(site: Path, patterns: tuple[str, ...]) -> list[str]:
    """Files of the site folder that atlasgen did not write (or that are kept by name)."""
    site = Path(site)
    if not site.is_dir():
        return []
    written = recorded_files(site)
    out = []
    for rel in files_under(site):
        if rel == SITE_MARKER:
            continue
        if is_kept(rel, patterns) or (written is not None and rel not in written):
            out.append(rel)
    return out


def carry_over(old: Path, staging: Path, patterns: tuple[str, ...]) -> list[str]:
    """Move the user's files of the old site folder into the freshly rendered one. A kept file
    replaces a rendered file of the same path; any other user file yields to it. Returns the moved paths."""
    moved = []
    for rel in user_files(old, patterns):
        target = staging / rel
        if (target.exists() or target.is_symlink()) and not is_kept(rel, patterns):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(old / rel, target)
        moved.append(rel)
    return moved


def clean_site(site: Path, patterns: tuple[str, ...]) -> list[str]:
    """Remove what atlasgen wrote into ``site`` (the recorded files, then empty folders and the marker;
    the folder itself when nothing is left). Returns the files kept."""
    site = Path(site)
    kept = user_files(site, patterns)
    if not kept:
        shutil.rmtree(site)
        return []
    keep = set(kept)
    for rel in files_under(site):
        if rel not in keep:
            (site / rel).unlink()
    for base, dirs, _names in sorted(os.walk(site, topdown=False), key=lambda t: -len(t[0])):
        for d in dirs:
            path = Path(base) / d
            if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                path.rmdir()
    return kept
