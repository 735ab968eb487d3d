"""The distribution installs one top-level package, retrain: schemas/, consumers/ and producers/ of the repository
are retrain.schemas, retrain.consumers and retrain.producers, and nothing imports them by their bare names."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO_ROOT

MAPPED = {"retrain.schemas": "schemas", "retrain.consumers": "consumers", "retrain.producers": "producers"}
BARE_IMPORT = re.compile(r"^\s*(?:from|import) (?:schemas|consumers|producers)\b", re.M)


def _setuptools() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_the_three_folders_are_mapped_under_retrain():
    package_dir = _setuptools()["package-dir"]
    assert {name: package_dir[name] for name in MAPPED} == MAPPED


def test_every_package_folder_is_in_the_distribution():
    listed = set(_setuptools()["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts) for init in (REPO_ROOT / "retrain").rglob("__init__.py")
    }
    for name, folder in MAPPED.items():
        found |= {
            name + "".join(f".{p}" for p in init.parent.relative_to(REPO_ROOT / folder).parts)
            for init in (REPO_ROOT / folder).rglob("__init__.py")
        }
    assert listed == found, f"pyproject.toml's packages and the package folders differ: {sorted(listed ^ found)}"


def test_no_code_imports_the_bare_folder_names():
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for folder in ("retrain", "schemas", "consumers", "producers", "tests", "bench")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if BARE_IMPORT.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], f"import these as retrain.<name>: {offenders}"
