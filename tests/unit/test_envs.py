"""Conda envs: every rule has one, each lists what its code imports, pins match the venv.

The test suite does not need conda, so these checks make ``--sdm conda`` work by
construction. A rule's code is its script plus every
``brainalign`` module reachable from it through imports (module- and function-level, and
all dataset readers, which are chosen by name at run time).
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT as REPO

SRC = REPO / "src"

# Import name -> conda-forge package name, where they differ.
CONDA_NAMES = {
    "torch": "pytorch",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "matplotlib": "matplotlib-base",
}
# Import name -> PyPI distribution, where they differ (for the venv pin check).
PYPI_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def rule_blocks() -> dict[str, dict[str, str]]:
    """rule name -> its directives' first values (script, conda) from rules/*.smk."""
    rules = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", path.read_text(), re.M):
            body = match.group(2)
            found = {}
            for directive in ("script", "conda"):
                value = re.search(rf"^    {directive}:\n\s+\"([^\"]+)\"", body, re.M)
                if value:
                    found[directive] = str((path.parent / value.group(1)).resolve())
            found["localrule"] = "localrule: True" in body
            rules[match.group(1)] = found
    return rules


def module_path(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_names(path: Path, package: str | None) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level and package:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party packages imported by a script and the package code it reaches."""
    todo, seen, external = [(script, None)], set(), set()
    while todo:
        path, package = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path, package):
            top = name.split(".")[0]
            if top == "brainalign":
                found = module_path(name)
                if found:
                    pkg = name if found.name == "__init__.py" else name.rsplit(".", 1)[0]
                    todo.append((found, pkg))
                if name.startswith("brainalign.datasets"):
                    todo += [(p, "brainalign.datasets") for p in (SRC / "brainalign/datasets").glob("*.py")]
            elif top not in STDLIB and top not in {"_package_path", "snakemake"} and top:
                external.add(top)
    return external


def env_packages(env_file: Path) -> set[str]:
    spec = yaml.safe_load(env_file.read_text())
    names = set()
    for dependency in spec["dependencies"]:
        if isinstance(dependency, str):
            names.add(re.split(r"[ =<>]", dependency)[0].lower())
    return names


RULES = rule_blocks()


def test_every_rule_with_a_script_has_an_env():
    for name, rule in RULES.items():
        if "script" in rule:
            assert "conda" in rule, f"rule {name} has no conda env"
            assert Path(rule["conda"]).exists(), rule["conda"]


@pytest.mark.parametrize("rule", sorted(name for name, rule in RULES.items() if "script" in rule))
def test_env_lists_every_import_of_its_rule(rule):
    imports = third_party_imports(Path(RULES[rule]["script"]))
    listed = env_packages(Path(RULES[rule]["conda"]))
    missing = sorted(
        i
        for i in imports
        if CONDA_NAMES.get(i, i).lower().replace("_", "-") not in {p.replace("_", "-") for p in listed}
    )
    assert not missing, f"{Path(RULES[rule]['conda']).name} lacks {missing} imported by rule {rule}"


@pytest.mark.parametrize("env_file", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_match_the_venv(env_file):
    spec = yaml.safe_load(env_file.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    for dependency in spec["dependencies"]:
        if not isinstance(dependency, str) or dependency.startswith(("python ", "pip")):
            continue
        name, version = re.fullmatch(r"([\w.-]+) =([\d.]+)", dependency).groups()
        installed = metadata.version(PYPI_NAMES.get(name, name))
        assert installed.split("+")[0].startswith(version + "."), (
            f"{env_file.name}: {name} ={version}, venv has {installed}"
        )
