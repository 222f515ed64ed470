"""Every install comes from the lock, and the lock is the one pyproject.toml asks for (issue 19).

``uv.lock`` pins every package of every extra; ``make lock`` refreshes it and exports, with
hashes, the three requirement files the install paths use: ``requirements/serve.txt``
(``make serve``), ``requirements/dev.txt`` (``make check``/``make test``, so CI) and
``requirements/image.txt`` (the Lambda image). These tests need no network: they read the files.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

# requirement file: the extras it holds, and where it is installed from
EXPORTS = {
    "serve.txt": ({"serve", "web", "bot"}, "Makefile"),
    "dev.txt": ({"dev"}, "Makefile"),
    "image.txt": ({"serve", "bot"}, "infra/Dockerfile"),
}


def pinned(path: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """``name: [(version, hashes), ...]`` of an exported file (a name twice: one version per Python)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line.split(" --hash=")[0])
        assert len(requirement.specifier) == 1 and next(iter(requirement.specifier)).operator == "==", line
        found.setdefault(canonicalize_name(requirement.name), []).append(
            (next(iter(requirement.specifier)).version, re.findall(r"--hash=sha256:[0-9a-f]{64}", line)))
    return found


def locked_versions() -> dict[str, set[str]]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        versions.setdefault(canonicalize_name(package["name"]), set()).add(package.get("version", ""))
    return versions


def direct_requirements(extras: set[str]) -> list[Requirement]:
    """What pyproject.toml asks for with these extras: the core's dependencies and each extra's,
    following ``skinscan[...]`` references."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted, seen, found = list(extras), set(), [Requirement(d) for d in project["dependencies"]]
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for dependency in project["optional-dependencies"][extra]:
            requirement = Requirement(dependency)
            if canonicalize_name(requirement.name) == "skinscan":
                wanted += sorted(requirement.extras)
            else:
                found.append(requirement)
    return found


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_every_requirement_is_pinned_with_its_hashes(name):
    path = REPO / "requirements" / name
    requirements = pinned(path)
    assert len(requirements) > 20
    for requirement, versions in requirements.items():
        for version, hashes in versions:
            assert hashes, f"{name}: {requirement}=={version} has no hash: pip --require-hashes would refuse the file"
    extras, _ = EXPORTS[name]
    header = path.read_text().split("\n", 3)[:3]
    assert "uv export --frozen --no-emit-project" in " ".join(header)
    assert set(re.findall(r"--extra (\w+)", " ".join(header))) == extras, "exported for other extras"
    assert "skinscan" not in requirements, "the project itself is installed from the checkout, not the index"


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_the_exports_are_the_lock_and_the_lock_is_what_pyproject_asks_for(name):
    """A dependency changed in pyproject.toml without `make lock` fails here, not in a later install."""
    requirements = pinned(REPO / "requirements" / name)
    locked = locked_versions()
    for requirement, versions in requirements.items():
        for version, _ in versions:
            assert version in locked.get(requirement, set()), f"{requirement}=={version} is not in uv.lock"
    extras, _ = EXPORTS[name]
    for wanted in direct_requirements(extras):
        key = canonicalize_name(wanted.name)
        if wanted.marker is not None and key not in requirements:
            continue  # for another platform than this file's (tensorflow vs tensorflow-cpu)
        assert key in requirements, f"{name} lacks {wanted.name}: run `make lock`"
        for version, _ in requirements[key]:
            assert wanted.specifier.contains(version, prereleases=True), \
                f"{name} pins {wanted.name}=={version}, outside pyproject's {wanted.specifier}: run `make lock`"


def test_the_image_carries_no_training_stack():
    requirements = pinned(REPO / "requirements" / "image.txt")
    for heavy in ("tensorflow", "tensorflow-cpu", "keras", "torch", "matplotlib", "scikit-image", "pytest"):
        assert heavy not in requirements, heavy


def test_every_install_path_installs_from_the_lock_with_hashes():
    makefile = (REPO / "Makefile").read_text()
    for name in ("serve.txt", "dev.txt"):
        assert f"pip install $(PIP_FLAGS) --require-hashes -r requirements/{name}" in makefile
    assert makefile.count("pip install $(PIP_FLAGS) --no-deps -e .") == 2, "skinscan itself brings nothing unlocked"
    assert not re.search(r"pip install[^\n]*-e \"?\.\[", makefile), "no install by extras any more"
    dockerfile = re.sub(r"\\\n\s*", " ", (REPO / "infra" / "Dockerfile").read_text())
    assert re.search(r"pip install [^\n]*--require-hashes [^\n]*-r requirements/image\.txt", dockerfile)
    assert re.search(r"pip install [^\n]*--no-deps [^\n]*skinscan-\*\.whl", dockerfile)
    assert "make test" in (REPO / ".ci" / "run").read_text(), "CI runs make test, which installs the dev lock"
    # `make lock` is the one way to refresh: it writes exactly the files the installs read.
    lock_recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    for name, (extras, _) in EXPORTS.items():
        exported = [line for line in lock_recipe.splitlines() if f"requirements/{name}" in line]
        assert len(exported) == 1 and set(re.findall(r"--extra (\w+)", exported[0])) == extras, name
