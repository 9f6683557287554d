"""Class hierarchies and names for groups of classes.

A hierarchy is a child -> parent map over names: every class of the dataset is
a leaf, parents are concepts ("dog" -> "mammal" -> "animal"), and names with
no parent hang under one implicit root. It comes from a file (``map.hierarchy``)
or, when none is given, from the dataset's own superclasses (the demo plants
four: animals, plants, vehicles, buildings).

File formats:

* ``.yaml`` / ``.yml`` / ``.json``: a mapping ``child: parent``;
* anything else (e.g. ``.txt``, ``.tsv``): one ``child<TAB>parent`` pair per
  line (WordNet's ``wordnet.is_a.txt`` lists ``parent child``; swap columns
  first), ``#`` comments and blank lines ignored.

Naming (after Microscope-style automatic labels): a group of features is named
from its summed class weights. The classes that carry ``coverage`` of the
weight are found; one class with at least ``dominant`` of it names the group
on its own; otherwise the lowest common ancestor of those classes names it
when it is not the root; otherwise the two leading classes ("cat / dog").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from atlasgen.errors import AtlasgenError

ROOT = ""


class HierarchyError(AtlasgenError):
    headline = "class hierarchy error"


class Hierarchy:
    """A forest of names above the dataset's classes."""

    def __init__(self, parent: dict[str, str], class_names: list[str]):
        self.parent = dict(parent)
        self.class_names = list(class_names)
        # Walk each class up to the root once; a cycle is a user error.
        self.paths: list[list[str]] = []
        for name in self.class_names:
            path, seen = [name], {name}
            while path[-1] in self.parent and self.parent[path[-1]] not in (None, ROOT):
                nxt = self.parent[path[-1]]
                if nxt in seen:
                    raise HierarchyError(
                        f"the class hierarchy has a cycle through {nxt!r}. Fix: give each name one "
                        "parent above it."
                    )
                path.append(nxt)
                seen.add(nxt)
            self.paths.append(path)  # leaf first, top concept last

    @classmethod
    def from_dataset(cls, classes: list[dict]) -> Hierarchy:
        """Class -> superclass, from dataset.json (empty superclasses: a flat hierarchy)."""
        return cls(
            {c["name"]: c["superclass"] for c in classes if c.get("superclass")}, [c["name"] for c in classes]
        )

    @classmethod
    def from_file(cls, path: Path, class_names: list[str]) -> Hierarchy:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise HierarchyError(
                f"map.hierarchy: cannot read {str(path)!r} ({exc.strerror}). Fix: point it at a "
                "readable file."
            ) from None
        parent: dict[str, str] = {}
        if Path(path).suffix.lower() in (".yaml", ".yml", ".json"):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise HierarchyError(
                    f"map.hierarchy: {str(path)!r} is not valid YAML/JSON "
                    f"({getattr(exc, 'problem', exc)}). Fix: write a mapping child: parent."
                ) from None
            if not isinstance(data, dict):
                raise HierarchyError(
                    f"map.hierarchy: {str(path)!r} must hold a mapping child: parent, got "
                    f"{type(data).__name__}."
                )
            for k, v in data.items():
                parent[str(k)] = ROOT if v is None else str(v)
        else:
            for n, line in enumerate(text.splitlines(), 1):
                line = line.split("#", 1)[0].rstrip()
                if not line.strip():
                    continue
                parts = line.split("\t") if "\t" in line else line.split()
                if len(parts) != 2:
                    raise HierarchyError(
                        f"map.hierarchy: {str(path)!r} line {n}: expected 'child<TAB>parent', got {line!r}."
                    )
                child, par = (p.strip() for p in parts)
                if child in parent and parent[child] != par:
                    raise HierarchyError(
                        f"map.hierarchy: {str(path)!r} line {n}: {child!r} already has parent "
                        f"{parent[child]!r}. Fix: one parent per name."
                    )
                parent[child] = par
        missing = [c for c in class_names if c not in parent]
        if len(missing) == len(class_names):
            raise HierarchyError(
                f"map.hierarchy: none of the dataset's classes ({', '.join(class_names[:3])}, ...) "
                f"appear in {str(path)!r}. Fix: use the class names of dataset.json."
            )
        return cls(parent, class_names)

    def ancestors(self, c: int) -> list[str]:
        return self.paths[c]

    def lca(self, class_ids) -> str:
        """Lowest common ancestor of classes; ROOT when they share none."""
        ids = list(class_ids)
        if not ids:
            return ROOT
        common = list(self.paths[ids[0]])
        for c in ids[1:]:
            mine = set(self.paths[c])
            common = [a for a in common if a in mine]
        return common[0] if common else ROOT

    def top(self, c: int) -> str:
        """The highest named ancestor of class ``c`` (its superclass in a two-level tree)."""
        return self.paths[c][-1]


def name_group(
    weights: np.ndarray,
    hierarchy: Hierarchy,
    *,
    coverage: float = 0.8,
    dominant: float = 0.6,
    max_classes: int = 6,
) -> str:
    """A name for summed class weights (see the module docstring)."""
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    total = weights.sum()
    if total <= 0:
        return "unlabelled"
    share = weights / total
    order = np.argsort(-share, kind="stable")
    names = hierarchy.class_names
    if share[order[0]] >= dominant:
        return names[order[0]]
    core = []
    acc = 0.0
    for c in order[:max_classes]:
        core.append(int(c))
        acc += share[c]
        if acc >= coverage:
            break
    if acc >= coverage:
        anc = hierarchy.lca(core)
        if anc != ROOT:
            return anc
    return (
        f"{names[order[0]]} / {names[order[1]]}"
        if len(order) > 1 and share[order[1]] > 0
        else names[order[0]]
    )


def load(hierarchy_path: str | None, classes: list[dict], resolve) -> Hierarchy:
    """The configured hierarchy: the file at ``map.hierarchy`` or the dataset's superclasses."""
    names = [c["name"] for c in classes]
    if hierarchy_path:
        return Hierarchy.from_file(resolve(hierarchy_path), names)
    return Hierarchy.from_dataset(classes)
