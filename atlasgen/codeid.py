"""A module's code identity: the hash of the source of every atlasgen module it may run.

The closure is found statically (``ast``), so computing it imports nothing (``atlasgen status``
stays light): every ``import`` and ``from ... import`` of an atlasgen module anywhere in a
module's source (inside functions too, relative or absolute, ``from atlasgen import x`` where x
is a module; not those under ``if TYPE_CHECKING:``, which never run), followed transitively,
plus the ``__init__`` of every package on the way (Python runs those on import).
"""

from __future__ import annotations

import ast
import functools
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
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = _named_imports(package, path.read_text(encoding="utf-8"))
    return {m for m in found if (m == PACKAGE or m.startswith(PACKAGE + ".")) and module_file(m, root)}


@functools.lru_cache(maxsize=512)
def _named_imports(package: str, source: str) -> frozenset[str]:
    """Every dotted name that ``source`` (a module of ``package``) may import, modules or not."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
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
            found.update(f"{target}.{alias.name}" for alias in node.names)  # kept if a module
    return frozenset(found)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks (never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def imports(name: str, root: Path) -> set[str]:
    """The atlasgen modules that module ``name`` imports directly (anywhere in its source)."""
    path = module_file(name, root)
    if path is None:
        raise FileNotFoundError(f"no source for module {name!r} under {root}")
    return _imported(name, path, Path(root))


def modules(root: Path) -> list[str]:
    """Every atlasgen module under ``root``, sorted."""
    base = Path(root) / PACKAGE
    names = []
    for path in base.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


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
