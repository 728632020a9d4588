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
    "simulator.sizing",
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
