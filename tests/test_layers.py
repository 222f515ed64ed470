"""Layers one way down: cli -> {functions, web, bot} -> skinscan_client / the skinscan core.

The core (shared/skinscan/*.py) imports nothing above it, and ``import skinscan``
loads only numpy and Pillow and changes no process state. Training may import
the core, never the reverse.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CORE = REPO / "shared" / "skinscan"
TRAINING = CORE / "training"
ADAPTERS = ("functions", "web", "bot", "skinscan_client")
# Not at `import skinscan`: the web and bot stacks, the training stack, and the lazy extras.
NEVER_AT_IMPORT = ("flask", "werkzeug", "telegram", "httpx", "tensorflow", "keras", "matplotlib",
                   "boto3", "botocore", "ai_edge_litert", "functions_framework")


def imported_names(path: Path, package: str) -> list[tuple[str, int, bool]]:
    """``(absolute module, line, at module level)`` for every import in a file of ``package``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] if node.module else [".".join(filter(None, (module, alias.name)))
                                                      for alias in node.names]
            else:
                names = [node.module or ""]
            found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found


def forbidden(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_the_core_imports_nothing_above_it(path):
    above = ADAPTERS + ("skinscan.training", "skinscan.cli")
    bad = [f"{path.name}:{line} imports {name}" for name, line, _ in imported_names(path, "skinscan")
           if forbidden(name, above)]
    assert bad == []


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_the_core_loads_heavy_packages_only_inside_the_function_that_needs_them(path):
    bad = [f"{path.name}:{line} imports {name} at module level"
           for name, line, top in imported_names(path, "skinscan") if top and forbidden(name, NEVER_AT_IMPORT)]
    assert bad == []


@pytest.mark.parametrize("path", sorted(TRAINING.glob("*.py")), ids=lambda p: p.name)
def test_training_imports_the_core_but_no_adapter_or_the_command_line(path):
    bad = [f"training/{path.name}:{line} imports {name}"
           for name, line, _ in imported_names(path, "skinscan.training")
           if forbidden(name, ADAPTERS + ("skinscan.cli",))]
    assert bad == []


def test_the_import_walker_sees_relative_and_absolute_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from .training.fit import x\nfrom .. import y\nimport web.app\n"
                      "def f():\n    from functions import http_api\n")
    names = sorted((name, top) for name, _, top in imported_names(sample, "skinscan"))
    assert names == [("functions", False), ("skinscan.training.fit", True), ("web.app", True), ("y", True)]


def test_import_skinscan_loads_only_numpy_and_pillow_and_sets_no_state():
    probe = ("import json, sys, warnings; import numpy; from PIL import Image; default = Image.MAX_IMAGE_PIXELS; "
             "filters = len(warnings.filters); import skinscan; "
             "print(json.dumps({'modules': sorted(sys.modules), "
             "'pillow_limit_changed': Image.MAX_IMAGE_PIXELS != default, "
             "'warning_filters_changed': len(warnings.filters) != filters}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=REPO, check=True)
    report = json.loads(result.stdout)
    loaded = sorted({name.split(".")[0] for name in report["modules"]} & set(NEVER_AT_IMPORT + ADAPTERS))
    assert loaded == []
    assert not [name for name in report["modules"] if name.startswith(("skinscan.training", "skinscan.cli"))]
    assert report["pillow_limit_changed"] is False and report["warning_filters_changed"] is False


def test_configure_process_sets_the_pillow_limit_and_keeps_exif_out_of_logs():
    probe = ("import logging, warnings; from PIL import Image; import skinscan; skinscan.configure_process(); "
             "print(Image.MAX_IMAGE_PIXELS, logging.getLogger('PIL').getEffectiveLevel() >= logging.INFO, "
             "any(f[2] is Image.DecompressionBombWarning and f[0] == 'error' for f in warnings.filters))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=REPO, check=True)
    assert result.stdout.split() == ["80000000", "True", "True"]
