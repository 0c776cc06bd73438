"""Layering: no import cycles anywhere in ``src/``, and nothing outside ``cli/`` imports ``cli/``.

Two checks: the module-level import graph (``from package import name`` an edge to the
sub-module ``name`` where there is one, else to the package) has no cycle; and every module,
imported first with no other stethoscope module loaded, imports (a cycle that a lucky import
order hides shows then as an ImportError on a partly initialised module)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "stethoscope"
# extras a module may need that an install without them lacks: such a module is left out
OPTIONAL = (
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "prometheus_client",
    "ray",
    "sounddevice",
    "onnx",
    "onnxruntime",
    "pyarrow",
    "watchdog",
    "websockets",
    "onnxscript",
    "transformers",
    "fsspec",
)


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__main__.py"}


def _imports(name: str, path: Path) -> set[str]:
    """The stethoscope modules ``path`` imports at module level (not in functions or ``if``
    blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            base = (
                package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            )
            stem = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in FILES else stem)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in FILES and m != name}


def test_nothing_outside_cli_imports_cli() -> None:
    offenders = [
        name
        for name, path in FILES.items()
        if not name.startswith("stethoscope.cli")
        and any(
            m.startswith("stethoscope.cli")
            for m in _imports(name, path) | _lazy_imports(name, path)
        )
    ]
    assert not offenders, offenders


def _lazy_imports(name: str, path: Path) -> set[str]:
    """Every stethoscope module ``path`` imports anywhere (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = (
                package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            )
            found.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_module_level_import_graph_has_no_cycle() -> None:
    graph = {name: _imports(name, path) for name, path in FILES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_every_module_imports_first() -> None:
    """Each module imported first, with no other stethoscope module loaded (one interpreter;
    third-party packages stay loaded between modules, which changes nothing about our cycles)."""
    script = f"""
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "stethoscope" or m.startswith("stethoscope.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if not (err.name and err.name.split(".")[0] in {OPTIONAL!r}):
            failed.append(f"{{name}}: {{type(err).__name__}}: {{err}}")
    except Exception as err:
        failed.append(f"{{name}}: {{type(err).__name__}}: {{err}}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    run = subprocess.run(
        [sys.executable, "-c", script, *FILES],
        capture_output=True,
        text=True,
        cwd=SRC,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
