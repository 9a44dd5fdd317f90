"""The Python version mcugen declares (pyproject's requires-python, README) is one its code runs
on (issue 17, item 7: pyproject and README promised 3.10, targets.py imports tomllib, 3.11).

Every module is parsed with the grammar of the declared minimum, and the standard library's
modules and names that are newer than it may be imported only with a fallback (inside a try
whose except catches ImportError)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from conftest import REPO

# What the standard library added, from "New in version" of its documentation: a module, or a
# (module, name) pair, and the first version that has it.
NEWER_MODULES = {"tomllib": (3, 11), "wsgiref.types": (3, 11)}
NEWER_NAMES = {
    ("typing", "Self"): (3, 11), ("typing", "LiteralString"): (3, 11),
    ("typing", "Never"): (3, 11), ("typing", "assert_never"): (3, 11),
    ("typing", "assert_type"): (3, 11), ("typing", "reveal_type"): (3, 11),
    ("typing", "TypeVarTuple"): (3, 11), ("typing", "Unpack"): (3, 11),
    ("typing", "Required"): (3, 11), ("typing", "NotRequired"): (3, 11),
    ("typing", "dataclass_transform"): (3, 11), ("typing", "override"): (3, 12),
    ("typing", "TypeAliasType"): (3, 12), ("typing", "ReadOnly"): (3, 13),
    ("typing", "TypeIs"): (3, 13), ("enum", "StrEnum"): (3, 11),
    ("enum", "verify"): (3, 11), ("datetime", "UTC"): (3, 11),
    ("contextlib", "chdir"): (3, 11), ("hashlib", "file_digest"): (3, 11),
    ("asyncio", "TaskGroup"): (3, 11), ("asyncio", "timeout"): (3, 11),
    ("itertools", "batched"): (3, 12), ("warnings", "deprecated"): (3, 13),
    ("copy", "replace"): (3, 13),
}
NEWER_BUILTINS = {"ExceptionGroup": (3, 11), "BaseExceptionGroup": (3, 11)}


def declared_minimum() -> tuple[int, int]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    match = re.fullmatch(r">=\s*3\.(\d+)", pyproject["project"]["requires-python"].strip())
    assert match, pyproject["project"]["requires-python"]
    return 3, int(match.group(1))


def python_files() -> list[Path]:
    return sorted([*(REPO / "mcugen").rglob("*.py"), *(REPO / "host_tests").glob("*.py"),
                   *(REPO / "benchmarks").glob("*.py")])


def with_fallback(tree: ast.AST) -> set[int]:
    """Line numbers of the imports inside a try that catches ImportError."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                handler.type is None or "ImportError" in ast.unparse(handler.type)
                or "ModuleNotFoundError" in ast.unparse(handler.type)
                for handler in node.handlers):
            for inner in node.body:
                lines.update(child.lineno for child in ast.walk(inner)
                             if isinstance(child, (ast.Import, ast.ImportFrom)))
    return lines


def newer_uses(tree: ast.AST) -> list[tuple[int, str, tuple[int, int]]]:
    """(line, what, version) of every use of the standard library newer than 3.10."""
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in NEWER_MODULES:
                    uses.append((node.lineno, alias.name, NEWER_MODULES[alias.name]))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in NEWER_MODULES:
                uses.append((node.lineno, node.module, NEWER_MODULES[node.module]))
            for alias in node.names:
                if (node.module, alias.name) in NEWER_NAMES:
                    uses.append((node.lineno, f"{node.module}.{alias.name}",
                                 NEWER_NAMES[node.module, alias.name]))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and (node.value.id, node.attr) in NEWER_NAMES:
            uses.append((node.lineno, f"{node.value.id}.{node.attr}",
                         NEWER_NAMES[node.value.id, node.attr]))
        elif isinstance(node, ast.Name) and node.id in NEWER_BUILTINS:
            uses.append((node.lineno, node.id, NEWER_BUILTINS[node.id]))
        elif isinstance(node, ast.TryStar):
            uses.append((node.lineno, "except*", (3, 11)))
    return uses


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_code_runs_on_the_declared_minimum_python(path):
    minimum = declared_minimum()
    source = path.read_text()
    tree = ast.parse(source, filename=str(path), feature_version=minimum)  # its grammar
    guarded = with_fallback(tree)
    too_new = [f"line {line}: {what} needs Python {major}.{minor}"
               for line, what, (major, minor) in newer_uses(tree)
               if (major, minor) > minimum and line not in guarded]
    assert not too_new, f"{path.name} (requires-python >={minimum[0]}.{minimum[1]}): {too_new}"


def test_readme_states_the_declared_minimum():
    major, minor = declared_minimum()
    readme = (REPO / "README.md").read_text()
    stated = set(re.findall(r"Python (3\.\d+)\+", readme))
    assert stated == {f"{major}.{minor}"}, stated


def test_the_checker_sees_a_newer_module_without_fallback():
    """The check itself: tomllib without a fallback is seen, with one it is not."""
    bare = ast.parse("import tomllib\n")
    fallback = ast.parse("try:\n    import tomllib\nexcept ImportError:\n    import tomli as "
                         "tomllib\n")
    assert [use[1] for use in newer_uses(bare)] == ["tomllib"]
    assert with_fallback(bare) == set() and with_fallback(fallback) == {2}
