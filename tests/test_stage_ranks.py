"""The runner owns the ranks: stage modules split and merge their work through ``ctx.ranks`` only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from atlasgen.dist import Ranks

STAGES = sorted((Path(__file__).resolve().parents[1] / "atlasgen" / "stages").glob("*.py"))
FORBIDDEN_NAMES = {"pickle", "barrier", "torch.distributed", "td", "all_gather_object", "gather_object"}
FORBIDDEN_ATTRS = {"dist", "rank", "world", "barrier", "gather_object", "all_gather_object"}


@pytest.mark.parametrize("path", STAGES, ids=[p.stem for p in STAGES])
def test_a_stage_holds_no_barrier_pickle_or_rank_arithmetic(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [n for n in names if n and (n in FORBIDDEN_NAMES or n.startswith("torch.distributed"))]
            found += [n for n in names if n == "atlasgen.dist"]
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS:
            if not (
                node.attr == "dist" and isinstance(node.value, ast.Attribute) and node.value.attr == "ranks"
            ):
                found.append(f".{node.attr}")
        elif isinstance(node, ast.Constant) and node.value == "_ranks":
            found.append("'_ranks'")
    # The SAE stage hands the process group to the trainer (DistributedDataParallel): ranks.dist.
    assert found == [], f"{path.name}: {found}"


def test_one_process_is_a_world_of_one(tmp_path):
    ranks = Ranks(states=tmp_path)
    assert (ranks.rank, ranks.world, ranks.main) == (0, 1, True)
    assert ranks.share("abc") == ["a", "b", "c"] and all(ranks.mine(i) for i in range(5))
    assert ranks.split(range(3), lambda mine: sum(mine)) == 3
    part = {"x": 1}
    assert ranks.merge(part, lambda parts: 1 / 0) is part  # the part itself: nothing to combine
    assert ranks.merge(part, lambda parts: 1 / 0, everywhere=True) is part
    assert ranks.from_main(part) is part
    calls = []
    assert ranks.keep("layer/scan", lambda: calls.append(1) or 7) == 7
    assert ranks.keep("layer/scan", lambda: calls.append(1) or 7) == 7 and calls == [1, 1]
    assert list(tmp_path.iterdir()) == []  # one process keeps no per-rank state
