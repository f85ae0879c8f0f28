"""The package's shape: imports flow downstream only (no cycle between brandsentry modules), files stay short."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "brandsentry"
SRC = PACKAGE_ROOT.parent
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The brandsentry modules `name` imports anywhere (module level, in functions, under TYPE_CHECKING).

    `from brandsentry.x import y` means the module `brandsentry.x.y` when that is a module, else
    `brandsentry.x`; a relative import is resolved against the importing module's package.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(_known_prefix(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in known else _known_prefix(source, known))
    return {module for module in found if module is not None and module != name}


def _known_prefix(dotted: str, known: set[str]) -> str | None:
    """The longest prefix of `dotted` that is a brandsentry module (None for anything else)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in known:
            return prefix
    return None


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported_modules(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a → … → a) per strongly connected group of modules that import each other (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_within(graph, set(group)) for group in groups]


def _cycle_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest import path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def test_the_cycle_finder_finds_and_spells_out_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_resolve_to_modules(tmp_path):
    known = {"brandsentry", "brandsentry.scoring", "brandsentry.scoring.run", "brandsentry.files"}
    source = tmp_path / "x.py"
    source.write_text(
        "from brandsentry.scoring import run, ScoreSummary\n"
        "import brandsentry.files\n"
        "import numpy\n"
        "def f():\n"
        "    from brandsentry.files import atomic_write\n"
    )
    found = imported_modules("brandsentry.x", source, known)
    assert found == {"brandsentry.scoring.run", "brandsentry.scoring", "brandsentry.files"}


def test_no_import_cycle_between_brandsentry_modules():
    graph = import_graph()
    assert "brandsentry.scoring.run" in graph and graph["brandsentry.cli.score"]
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_no_source_file_is_over_the_line_limit():
    lengths = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in SRC.rglob("*.py")}
    long = sorted(f"{path.relative_to(SRC)}: {n}" for path, n in lengths.items() if n > MAX_LINES)
    assert not long, f"files over {MAX_LINES} lines:\n" + "\n".join(long)


def test_a_spawned_lane_imports_nothing_heavy_before_it_dies_with_its_parent():
    """`scoring.lanes.lane_entry` is what a spawned lane unpickles: importing it must not pull in torch & co."""
    heavy = ("torch", "numpy", "pandas", "omegaconf", "faiss", "timm", "cv2", "onnxruntime", "openvino")
    probe = f"import sys, brandsentry.scoring.lanes; print([m for m in {heavy!r} if m in sys.modules])"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout + found.stderr


# The stages in the README's order ("One module per stage"): a stage imports its own and earlier stages only.
# The first entry holds what every stage may use; edges (CLI, portal, evaluation, synthetic world) are
# outside the order: they may import any stage, and no stage imports them.
STAGES = (
    ("errors", "config", "settings", "files", "run_folder", "images", "plots", "retrieval_metrics"),
    ("database",),
    ("catalog",),
    ("ingest",),
    ("image_batches",),
    ("embed", "embed_runtime", "embed_openvino", "embed_int8"),
    ("index", "index_faiss"),
    ("index_sync",),
    ("cues",),
    ("features",),
    ("ledger",),
    ("feedback",),
    ("classify",),
    ("model_choice",),
    ("bundle",),
    ("registry",),
    ("train", "finetune"),
    ("scoring",),
    ("review",),
    ("alliance",),
)
EDGES = ("cli", "portal", "evaluation", "synth")


def stage_of(module: str) -> int | None:
    """The stage rank of a brandsentry module (its top-level module or package); None for an edge."""
    if module == "brandsentry":  # the package itself holds only its version
        return 0
    top = module.split(".")[1]
    if top in EDGES:
        return None
    for rank, names in enumerate(STAGES):
        if top in names:
            return rank
    raise AssertionError(f"{module} is in no stage of tests/test_structure.py STAGES nor an edge")


def test_imports_flow_downstream_between_the_stages():
    upward = []
    for module, targets in import_graph().items():
        rank = stage_of(module)
        for target in sorted(targets):
            target_rank = stage_of(target)
            if target_rank is None and rank is not None:
                upward.append(f"{module} -> {target} (an edge)")
            elif rank is not None and target_rank > rank:
                upward.append(f"{module} -> {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)
