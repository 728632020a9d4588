"""Conventions as checks (STYLE B1/B5): library code reads no ambient time or global
randomness, the CLI is the only place that prints, and the engine knows no concrete stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

LIBRARY = sorted((REPO / "simulator").rglob("*.py"))
BANNED_CALLS = {
    ("time", "time"): "read time from the injected Clock",
    ("datetime", "now"): "read time from the injected Clock",
    ("datetime", "utcnow"): "read time from the injected Clock",
    ("random", "random"): "use a seeded numpy Generator",
    ("random", "seed"): "use a seeded numpy Generator",
    ("np.random", "rand"): "use a seeded numpy Generator",
    ("np.random", "seed"): "use a seeded numpy Generator",
}
# the engine and stage modules must not pick implementations: that is runtime.py's job
ENGINE_MAY_NOT_IMPORT = (
    "simulator.execution",
    "simulator.models",
    "simulator.features",
    "simulator.risk",
    "simulator.policies",
    "simulator.portfolio",
    "simulator.runtime",
)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _calls(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    return [(n.lineno, _dotted(n.func)) for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO)))
def test_library_code_reads_no_ambient_time_or_global_randomness(path):
    found = []
    for line, name in _calls(path):
        for (owner, attr), why in BANNED_CALLS.items():
            if name.endswith(f"{owner}.{attr}") or name == f"{owner}.{attr}":
                found.append(f"{path.name}:{line}: {name}() — {why}")
    assert found == []


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO)))
def test_library_code_does_not_print(path):
    prints = [line for line, name in _calls(path) if name == "print"]
    assert prints == []


# The layers of simulator/__init__.py as ranks: a module imports only modules of a LOWER rank,
# or of its own package at the same rank (a package's modules build on each other). The longest
# matching prefix gives a module's rank.
LAYER_OF = {
    "simulator.errors": 0,
    "simulator.types": 1,
    "simulator.intents": 2,
    "simulator.clock": 3,
    "simulator.market": 3,
    "simulator.metrics": 3,
    "simulator.timing": 3,
    "simulator.settings": 3,
    "simulator.plugins": 2,
    "simulator.instruments": 2,
    "simulator.rundir": 3,
    "simulator.config": 4,
    "simulator.protocols": 4,
    "simulator.sources": 5,
    "simulator.store": 6,
    "simulator.importers": 7,
    "simulator.catalog": 7,
    "simulator.session": 7,
    "simulator.inspect": 7,
    "simulator.selection": 8,
    "simulator.repair": 8,
    "simulator.features": 8,
    "simulator.models": 8,
    "simulator.policies": 8,
    "simulator.risk": 8,
    "simulator.execution": 8,
    "simulator.portfolio": 8,
    "simulator.recording": 8,
    "simulator.live": 9,
    "simulator.stress": 10,
    "simulator.feedsim": 10,
    "simulator.engine": 11,
    "simulator.warm": 11,
    "simulator.engine_timed": 12,
    "simulator.engine_live": 12,
    "simulator.runtime": 13,
    "simulator.live.stepper": 13,
    "simulator.batch": 14,
    "simulator.sweep": 15,
    "simulator.trainer": 14,
    "simulator.scaffold": 14,
    "simulator.bench": 14,
    "simulator.report": 14,
    "simulator.stress.run": 14,
    "simulator.live.session": 14,
    "simulator.live.run": 15,
    "simulator.live.dashboard": 16,
    "simulator.api": 16,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rank(module: str) -> tuple[str, int] | None:
    """(the matching prefix, its rank); None for the package root `simulator`."""
    for prefix in sorted(LAYER_OF, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYER_OF[prefix]
    return None


def _package(module: str) -> str:
    """The top-level unit a module belongs to: `simulator.sources.merge` -> `simulator.sources`."""
    return ".".join(module.split(".")[:2])


def _imported_modules(path: Path) -> list[str]:
    """Every simulator module `path` imports, `from simulator import runtime` included."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "simulator":
            names.extend(f"simulator.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_every_library_module_has_a_layer():
    unplaced = [_module_name(p) for p in LIBRARY if _module_name(p) != "simulator"]
    assert [m for m in unplaced if _rank(m) is None] == []


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_down_the_layers(path):
    module = _module_name(path)
    mine = _rank(module)
    if mine is None:
        return
    upward = []
    for name in _imported_modules(path):
        if not name.startswith("simulator.") or name == "simulator":
            continue
        theirs = _rank(name)
        assert theirs is not None, f"{module} imports {name}, which has no layer"
        same_package = _package(name) == _package(module)
        if theirs[1] > mine[1] or (theirs[1] == mine[1] and not same_package):
            upward.append(f"{module} (L{mine[1]}) imports {name} (L{theirs[1]})")
    assert upward == []


def test_engine_knows_only_protocols():
    imports = _imports(REPO / "simulator" / "engine.py")
    assert [m for m in imports if m.startswith(ENGINE_MAY_NOT_IMPORT)] == []


def test_library_never_imports_the_cli():
    offenders = [str(p) for p in LIBRARY if "cli" in _imports(p)]
    assert offenders == []


def test_errors_module_documents_the_whole_hierarchy():
    import simulator.errors as errors

    doc = errors.__doc__ or ""
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert {c.__name__ for c in classes} <= {word.strip("├└─│ ") for word in doc.split()}


def test_models_package_exports_resolve_lazily_and_completely():
    import simulator.models as models

    assert set(models.__all__) == set(models._MODULE_OF)
    for name in models.__all__:
        assert getattr(models, name) is not None


def test_replaying_a_rule_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, simulator.runtime, cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False"
