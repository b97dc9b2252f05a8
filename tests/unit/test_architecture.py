"""The import rule of the package: imports run down the stages, never in a circle.

Stages, from the bottom: shared leaves (errors; then options, the schema's defaults; then io,
stats, config; then provenance), the inputs (datasets, models), the measurements (encoding,
behavior), the analysis and the rehearsal data generator (which plants what the measurements
must find), the plots, and on top the entry points (the command-line modules and the
workflow's job runner). A module may import its own package or any lower rank, never a
higher or equal rank of another package; every import counts, those inside functions too.
Editing a stage's code then cannot change a lower stage's behaviour.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "brainalign"
RANK = {
    "errors": 0,
    "options": 1,
    "io": 2,
    "stats": 2,
    "config": 2,
    "provenance": 3,
    "datasets": 4,
    "models": 4,
    "encoding": 5,
    "behavior": 5,
    "analysis": 6,
    "rehearsal": 6,
    "plots": 7,
    "cli": 8,
    "workflow": 8,
    "__init__": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every brainalign module the file imports (``from brainalign import io`` counts as ``brainalign.io``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("brainalign")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brainalign"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                found.add(candidate if is_module else node.module)
    return found - {"brainalign"}


def stage(module: str) -> str:
    """The module's stage: its subpackage, ``cli`` for every command-line module (entry points)."""
    parts = module.split(".")
    if parts[-1] == "cli":
        return "cli"
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = {module_name(path): imported_modules(path) for path in PACKAGE.rglob("*.py")}


def test_every_package_module_has_a_rank():
    assert {stage(module) for module in GRAPH} <= set(RANK)


def test_imports_run_down_the_stages():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if stage(target) != stage(module) and RANK[stage(target)] >= RANK[stage(module)]
    )
    assert upward == []


def test_there_is_no_import_circle():
    visiting, done, circles = [], set(), []

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            circles.append(visiting[visiting.index(module) :] + [module])
            return
        visiting.append(module)
        for target in sorted(GRAPH.get(module, ())):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(GRAPH):
        visit(module)
    assert circles == []


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("brainalign.encoding.pipeline", ("sklearn", "himalaya", "matplotlib", "torch", "jsonschema")),
        ("brainalign.analysis.pipeline", ("matplotlib", "torch", "himalaya")),
    ],
)
def test_a_stage_imports_only_what_its_jobs_use(module, absent):
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in {absent!r} if m in sys.modules))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_resolving_a_fits_options_loads_no_config_validator():
    """A fit job reads its defaults from the schema without jsonschema (config validation's)."""
    import subprocess
    import sys

    code = (
        "import sys; from brainalign.encoding import robust, aw2024; "
        "robust.resolve_robust_options({}); aw2024.resolve_aw2024_options({}); "
        "print('jsonschema' in sys.modules, 'yaml' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.split() == ["False", "True"]
