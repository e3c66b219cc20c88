"""The layout is written down and enforced: the import contracts fail on a wrong-way
import, and docs/architecture.md names every module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def copy_of_the_tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    for part in ("workers", "producer"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(tree), "PATH": ""})


def test_the_contracts_hold_on_the_tree_as_it_is(tmp_path: Path) -> None:
    done = lint_imports(copy_of_the_tree(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:]
    assert "3 kept, 0 broken" in done.stdout


def test_a_wrong_way_import_fails_the_layers_contract(tmp_path: Path) -> None:
    tree = copy_of_the_tree(tmp_path)
    templates = tree / "workers" / "http" / "templates.py"
    templates.write_text(templates.read_text() + "\nfrom workers.store.database import Store\n")
    done = lint_imports(tree)
    assert done.returncode == 1
    assert "workers.http is not allowed to import workers.store" in done.stdout, done.stdout


def test_an_import_cycle_inside_a_package_fails_the_acyclic_contract(tmp_path: Path) -> None:
    tree = copy_of_the_tree(tmp_path)
    schedule = tree / "workers" / "state" / "schedule.py"  # parking imports schedule
    schedule.write_text(schedule.read_text() + "\nfrom workers.state import parking\n")
    done = lint_imports(tree)
    assert done.returncode == 1
    assert "No cycles are allowed in workers.state" in done.stdout, done.stdout


def test_the_architecture_page_names_every_module_under_its_package() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for package in ("workers", "producer"):
        for module in sorted((ROOT / package).rglob("*.py")):
            folder = module.parent.relative_to(ROOT).as_posix()
            if "versions" in folder:
                continue  # migration scripts: one revision each, listed by alembic
            section = page.split(f"### `{folder}/`", 1)
            if len(section) < 2 or f"- `{module.name}` (" not in section[1].split("### ", 1)[0]:
                missing.append(f"{folder}/{module.name}")
    assert missing == [], f"docs/architecture.md does not describe: {missing}"
