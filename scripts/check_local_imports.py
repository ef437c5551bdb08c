#!/usr/bin/env python3
"""Fail when a module imports another aideploy package from inside a function or class.

Imports between the floors stay at the top of a module, where import-linter sees them; an import
moved into a function to dodge a cycle hides a layering problem. Imports inside
``if TYPE_CHECKING:`` at module level are top-level imports too. Within one package (say
``aideploy.knowledge``) a deferred import is allowed. Run from the repository root.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path


def package_dirs(root: Path) -> dict[str, Path]:
    """Import name -> folder, from pyproject.toml's package-dir mapping."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items()}


def floor_of(module: str) -> str:
    """The package a module belongs to: ``aideploy.X`` (``aideploy`` for the root's own files)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def module_name(path: Path, dirs: dict[str, Path]) -> str | None:
    best: tuple[int, str] | None = None
    for name, folder in dirs.items():
        try:
            rel = path.resolve().relative_to(folder.resolve())
        except ValueError:
            continue
        depth = len(folder.resolve().parts)
        if best is None or depth > best[0]:
            parts = [*name.split("."), *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            best = (depth, ".".join(parts))
    return best[1] if best else None


def deferred_imports(tree: ast.Module) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            )
            if nested and isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif nested and isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append((child.lineno, child.module))
            visit(child, inner)

    visit(tree, False)
    return found


def main() -> int:
    root = Path.cwd()
    dirs = package_dirs(root)
    problems = []
    for folder in sorted(set(dirs.values())):
        for path in sorted(folder.rglob("*.py")):
            own = module_name(path, dirs)
            if own is None:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for line, target in deferred_imports(tree):
                if target.split(".")[0] != "aideploy":
                    continue
                if floor_of(target) != floor_of(own):
                    where = path.relative_to(root)
                    problems.append(f"{where}:{line}: {own} imports {target} inside a function")
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} function-local import(s) across packages", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
