"""Rules of the house that code review would otherwise have to remember: short functions, and no stage
that tests a condition's name (what differs per condition is the condition's own attribute or method)."""

from __future__ import annotations

import ast
from pathlib import Path

import controlkit
from controlkit import conditions

ROOT = Path(controlkit.__file__).parent
MAX_FUNCTION_LINES = 120


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        yield path.relative_to(ROOT), ast.parse(path.read_text())


def test_no_function_is_longer_than_the_limit():
    long = [
        f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def _mentions_name(node: ast.AST) -> bool:
    attributes = (part.attr for part in ast.walk(node) if isinstance(part, ast.Attribute))
    return any(attribute in ("name", "condition") for attribute in attributes)


def test_no_stage_tests_a_condition_name():
    names = set(conditions.available())
    offenders = []
    for path, tree in _modules():
        if path.parts[0] == "conditions":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            constants = [o.value for o in operands if isinstance(o, ast.Constant) and type(o.value) is str]
            by_name = any(value in names for value in constants)
            by_part = any(isinstance(op, ast.In | ast.NotIn) for op in node.ops) and constants
            if by_name or (by_part and any(_mentions_name(o) for o in operands)):
                offenders.append(f"{path}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_the_rules_catch_what_they_are_for(tmp_path, monkeypatch):
    """The two checks above see the patterns they forbid (so an empty list means something)."""
    source = (
        "def check(condition, config):\n"
        "    if 'face' in condition.name:\n"
        "        return 1\n"
        "    return config.condition == 'face-landmarks'\n"
        + "def long():\n"
        + "    x = 1\n" * (MAX_FUNCTION_LINES + 1)
    )
    (tmp_path / "stage.py").write_text(source)
    monkeypatch.setattr("test_layout.ROOT", tmp_path)
    for check in (test_no_stage_tests_a_condition_name, test_no_function_is_longer_than_the_limit):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} did not catch its pattern")
