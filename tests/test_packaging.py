"""Packaging matches the imports: `pip install controlkit` is enough to import every module, and every
package controlkit imports anywhere comes with it or with a user-facing extra (never only with `dev`).

Imports are read with `ast` from the source (statements, and the module names given to ``require``,
``importlib.import_module`` and ``importlib.util.find_spec``); dependencies from pyproject.toml.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "controlkit"
DEVELOPER_EXTRAS = ("dev",)
DISTRIBUTIONS = {
    "cv2": "opencv-python-headless",
    "dlib": "dlib-bin",
    "PIL": "pillow",
    "skimage": "scikit-image",
    "yaml": "pyyaml",
}
"""Import names whose distribution has another name, for when it is not installed here (``dlib`` is in
no test environment); any other package that is not installed is taken to be named as it is imported."""
MODULE_NAME_CALLS = ("require", "import_module", "find_spec")
"""Functions whose first argument names a module that they import (or look for)."""


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    package: str
    module_level: bool
    extra: str | None = None  # the extra a ``require(module, extra)`` names

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root).as_posix()}:{self.line}"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(text: str) -> tuple[str, list[str]]:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", text)
    assert match, f"unreadable requirement in pyproject.toml: {text!r}"
    extras = [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
    return normalize(match.group(1)), extras


def declared(pyproject: dict) -> tuple[set[str], dict[str, set[str]]]:
    """The core distributions and each extra's (``controlkit[x]`` in an extra brings in extra ``x``)."""
    project = pyproject["project"]
    name = normalize(project["name"])
    raw = project.get("optional-dependencies", {})

    def names(requirements: list[str], seen: tuple[str, ...] = ()) -> set[str]:
        found = set()
        for text in requirements:
            dist, extras = _requirement(text)
            if dist != name:
                found.add(dist)
            for extra in extras if dist == name else ():
                if extra not in seen:
                    found |= names(raw[extra], (*seen, extra))
        return found

    return names(project.get("dependencies", [])), {
        extra: names(reqs, (extra,)) for extra, reqs in raw.items()
    }


@cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def distributions(package: str) -> set[str]:
    """The distributions that may provide the importable top-level ``package``."""
    found = {normalize(d) for d in _installed().get(package, [])}
    return found | {normalize(DISTRIBUTIONS.get(package, package))}


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _imports_of(node: ast.AST, path: Path, module_level: bool) -> list[Import]:
    """The imports ``node`` itself makes (not its children's)."""
    if isinstance(node, ast.Import):
        return [Import(path, node.lineno, a.name.split(".")[0], module_level) for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [Import(path, node.lineno, node.module.split(".")[0], module_level)]
    if isinstance(node, ast.Call) and _called_name(node) in MODULE_NAME_CALLS and node.args:
        args = [
            a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args
        ]
        if args[0]:
            extra = args[1] if _called_name(node) == "require" and len(args) > 1 else None
            return [Import(path, node.lineno, args[0].split(".")[0], module_level, extra)]
    return []


def find_imports(source: str, path: Path) -> list[Import]:
    """Every import in ``source``; module-level ones run when the module is imported: top-level statements,
    inside top-level ``try``/``if``/``with`` and class bodies too, but not in functions or under
    ``if TYPE_CHECKING``."""
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        found.extend(_imports_of(node, path, module_level))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            module_level = False
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, module_level)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, module_level)

    visit(ast.parse(source, filename=str(path)), True)
    return found


def third_party(src: Path) -> list[Import]:
    """Imports of packages that are neither the standard library nor controlkit, in every module of src."""
    found = []
    for path in sorted(src.rglob("*.py")):
        found += find_imports(path.read_text(), path)
    return [i for i in found if i.package not in sys.stdlib_module_names and i.package != "controlkit"]


def not_core_at_module_level(src: Path, pyproject: dict) -> list[str]:
    core, _ = declared(pyproject)
    return [
        f"{i.where(src.parent)}: {i.package} ({', '.join(sorted(distributions(i.package)))})"
        for i in third_party(src)
        if i.module_level and not distributions(i.package) & core
    ]


def not_declared_for_users(src: Path, pyproject: dict) -> list[str]:
    core, extras = declared(pyproject)
    for_users = core.union(*(dists for extra, dists in extras.items() if extra not in DEVELOPER_EXTRAS))
    offenders = []
    for i in third_party(src):
        if not distributions(i.package) & for_users:
            where = sorted(e for e, dists in extras.items() if distributions(i.package) & dists)
            now = f"only in extra(s) {', '.join(where)}" if where else "in no dependency list"
            offenders.append(f"{i.where(src.parent)}: {i.package} ({now})")
    return offenders


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_module_level_imports_are_core_dependencies():
    """Importing any module of controlkit needs nothing beyond `pip install controlkit`: optional packages
    are imported inside the function that needs them (DESIGN.md)."""
    offenders = not_core_at_module_level(SRC, _pyproject())
    assert not offenders, "imported at module level but not a core dependency:\n" + "\n".join(offenders)


def test_every_imported_package_is_a_core_dependency_or_in_a_user_extra():
    offenders = not_declared_for_users(SRC, _pyproject())
    message = "imported, but neither a core dependency nor in a user-facing extra (dev is not one):\n"
    assert not offenders, message + "\n".join(offenders)


def test_require_names_the_extra_that_installs_the_package():
    _, extras = declared(_pyproject())
    offenders = [
        f"{i.where(SRC.parent)}: require({i.package!r}, {i.extra!r})"
        for i in third_party(SRC)
        if i.extra is not None and not distributions(i.package) & extras.get(i.extra, set())
    ]
    assert not offenders, "the extra named does not install the package:\n" + "\n".join(offenders)


def test_extras_named_in_messages_exist():
    _, extras = declared(_pyproject())
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for line, text in enumerate(path.read_text().splitlines(), 1):
            for names in re.findall(r"controlkit\[([\w,-]+)\]", text):
                missing = [n for n in names.split(",") if n not in extras or n in DEVELOPER_EXTRAS]
                offenders += [f"{path.relative_to(SRC.parent).as_posix()}:{line}: {n}" for n in missing]
    assert not offenders, "these extras, named to users, are not user-facing extras:\n" + "\n".join(offenders)


def test_the_reader_tells_module_level_imports_from_deferred_ones():
    source = """
import os, numpy.linalg
from PIL import Image
from . import sibling
try:
    import yaml
except ImportError:
    yaml = None
if sys.version_info >= (3, 12):
    import cv2
if TYPE_CHECKING:
    import gradio
else:
    import tqdm
class Panel:
    import rich
    def draw(self):
        import matplotlib
def load():
    from skimage import data
    require("wandb", "wandb")
    importlib.import_module("ray.data")
"""
    found = {(i.package, i.module_level, i.extra) for i in find_imports(source, Path("m.py"))}
    assert found == {
        ("os", True, None), ("numpy", True, None), ("PIL", True, None), ("yaml", True, None),
        ("cv2", True, None), ("gradio", False, None), ("tqdm", True, None), ("rich", True, None),
        ("matplotlib", False, None), ("skimage", False, None), ("wandb", False, "wandb"),
        ("ray", False, None),
    }  # fmt: skip


def test_the_checks_catch_packages_that_only_dev_or_nothing_declares(tmp_path):
    src = tmp_path / "controlkit"
    src.mkdir()
    (src / "report.py").write_text("import matplotlib\n")
    (src / "app.py").write_text("def photo():\n    from skimage import data\n")
    (src / "spiga_detector.py").write_text("def parts():\n    import spiga\n")
    pyproject = {
        "project": {
            "name": "controlkit",
            "dependencies": ["numpy"],
            "optional-dependencies": {"dev": ["matplotlib", "scikit-image"], "app": ["gradio"]},
        }
    }
    assert not_core_at_module_level(src, pyproject) == ["controlkit/report.py:1: matplotlib (matplotlib)"]
    assert sorted(not_declared_for_users(src, pyproject)) == [
        "controlkit/app.py:2: skimage (only in extra(s) dev)",
        "controlkit/report.py:1: matplotlib (only in extra(s) dev)",
        "controlkit/spiga_detector.py:2: spiga (in no dependency list)",
    ]
    pyproject["project"]["optional-dependencies"] |= {"all": ["controlkit[dev]", "spiga"]}
    assert declared(pyproject)[1]["all"] == {"matplotlib", "scikit-image", "spiga"}
    assert not not_declared_for_users(src, pyproject)
