"""A module's code identity: the hash of the source of every atlasgen module it may run.

The closure is found statically (``ast``), so computing it imports nothing (``atlasgen status``
stays light): every ``import`` and ``from ... import`` of an atlasgen module anywhere in a
module's source (inside functions too, relative or absolute, ``from atlasgen import x`` where x
is a module), followed transitively, plus the ``__init__`` of every package on the way (Python
runs those on import).
"""

from __future__ import annotations

import ast
from pathlib import Path

from atlasgen.cache import hash_data, hash_file

PACKAGE = "atlasgen"


def module_file(name: str, root: Path) -> Path | None:
    """The source file of module ``name`` under ``root`` (the folder holding the package), if any."""
    base = Path(root).joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(name: str, path: Path, root: Path) -> set[str]:
    """The atlasgen modules that the source of module ``name`` imports (directly)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # kept below if a module
    return {m for m in found if (m == PACKAGE or m.startswith(PACKAGE + ".")) and module_file(m, root)}


def import_closure(name: str, root: Path) -> list[str]:
    """Every atlasgen module that importing ``name`` may run, ``name`` included, sorted."""
    root = Path(root)
    seen: set[str] = set()
    todo = [name]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way run first
            current = ".".join(parts[:i])
            if current in seen:
                continue
            path = module_file(current, root)
            if path is None:
                raise FileNotFoundError(f"no source for module {current!r} under {root}")
            seen.add(current)
            todo.extend(_imported(current, path, root) - seen)
    return sorted(seen)


def code_identity(name: str, root: Path) -> str:
    """Hash of the source of every module in the import closure of ``name``."""
    return hash_data([[m, hash_file(module_file(m, root))] for m in import_closure(name, root)])


def package_root() -> Path:
    """The folder that holds the installed atlasgen package."""
    return Path(__file__).resolve().parent.parent
