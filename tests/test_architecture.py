"""The floor plan holds: import-linter's layer contract (pyproject.toml) passes, and no module of the
package imports or reaches into another module's private (``_``) names."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path: Path, source: str | None = None) -> list[str]:
    """``from X import _name`` and ``alias._name`` where X / alias is another workbench module."""
    module = module_name(path)
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve(module, path, node)
            if not source.startswith("workbench"):
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if private(alias.name) and source != module and not (PACKAGE.parent / (target.replace(".", "/") + ".py")).exists():
                    found.append(f"{module}:{node.lineno} imports {source}.{alias.name}")
                aliases[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("workbench"):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else "workbench"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and private(node.attr):
            target = aliases.get(node.value.id)
            if target and target != module and _is_module(target):
                found.append(f"{module}:{node.lineno} uses {target}.{node.attr}")
    return found


def _is_module(dotted: str) -> bool:
    base = PACKAGE.parent / dotted.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def test_no_module_uses_another_modules_private_names():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) for use in private_uses(path)]
    assert found == []


def test_the_private_name_check_can_fail():
    """The checker itself flags both forms, so an empty list above means something."""
    source = "from ..stores.runs import _encode\nfrom .. import config\nconfig._at({}, ())\n"
    assert private_uses(PACKAGE / "pipeline" / "__init__.py", source) == ["workbench.pipeline:1 imports workbench.stores.runs._encode",
                                 "workbench.pipeline:3 uses workbench.config._at"]


def test_the_layer_contract_holds():
    lint = shutil.which("lint-imports") or pytest.fail("lint-imports is not installed (pip install -e '.[test]')")
    done = subprocess.run([lint, "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 1 kept, 0 broken." in done.stdout
