"""The package as a user gets it: built, checked, installed in a fresh virtual environment."""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_boardfarm.emulator import check_installed

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``python -m build``: the sdist, then the wheel built from that sdist (as a user would)."""
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True, capture_output=True)
    return Built(next(out.glob("*.tar.gz")), next(out.glob("*.whl")))


def test_twine_check_passes(built: Built) -> None:
    pytest.importorskip("twine")
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.sdist), str(built.wheel)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_sdist_leaves_the_tests_out_and_ships_the_license(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert not any(name.startswith(("tests/", "examples/", "scripts/", "node/", "bench/")) for name in names)
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= names
    assert {"firmware_helpers/bf_files.py", "pytest_boardfarm/py.typed"} <= names


def test_no_bytecode_is_shipped(built: Built) -> None:
    """scripts/setup writes __pycache__ next to the sources (scripts/precompile.py): neither
    the sdist nor the wheel built from it takes any."""
    with tarfile.open(built.sdist) as sdist:
        names = sdist.getnames()
    with zipfile.ZipFile(built.wheel) as wheel:
        names += wheel.namelist()
    assert [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".pyo"))] == []


def test_wheel_installs_the_helpers_inside_the_package(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        top_level = wheel.read(next(n for n in names if n.endswith("top_level.txt"))).decode().split()
    assert "pytest_boardfarm/firmware_helpers/bf_files.py" in names
    assert "pytest_boardfarm/py.typed" in names
    assert not any(name.startswith("firmware_helpers/") for name in names)
    assert top_level == ["pytest_boardfarm"]


def test_metadata(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        text = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    meta = email.message_from_string(text)
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in meta.get_all("License-File", [])
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier", [])
    assert "Framework :: Pytest" in classifiers and "Typing :: Typed" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert any(c.startswith("Operating System ::") for c in classifiers)
    assert any(c == "Programming Language :: Python :: 3.10" for c in classifiers)
    assert not any(c.startswith("License ::") for c in classifiers)  # the SPDX expression says it
    assert "pytest-plugin" in (meta["Keywords"] or "")
    requires = meta.get_all("Requires-Dist", [])
    assert "pluggy>=1.2" in requires  # pluggy 1.0 cannot load the plugin's hook wrappers


USER_TEST = """\
import firmware_helpers

from pytest_boardfarm import helper_sources


def test_users_own_package_is_imported():
    assert firmware_helpers.MINE is True


def test_the_plugins_helpers_are_read_from_the_install():
    assert "site-packages" in str(helper_sources.folder())
    assert helper_sources.blocks("bf_files.py")


def test_files_on_the_board(board):
    board.put(b"hello", "x.bin")  # uses the board-side helpers
    assert board.get("x.bin") == b"hello"
"""

USER_TYPED = """\
from pytest_boardfarm import Board, connect


def first_line(board: Board) -> str:
    return board.exec("print(1)").splitlines()[0]


def main() -> None:
    with connect("socket://localhost:1") as board:
        print(first_line(board))
"""


@pytest.fixture(scope="module")
def fresh_venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new virtual environment with only the built wheel (and its dependencies) installed."""
    where = tmp_path_factory.mktemp("venv") / "env"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(built.wheel)],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        pytest.skip(f"could not install the wheel's dependencies here: {install.stderr[-500:]}")
    yield python


def test_a_users_own_firmware_helpers_does_not_shadow_the_plugins(fresh_venv: Path, tmp_path: Path) -> None:
    check_installed()
    project = tmp_path / "project"
    (project / "firmware_helpers").mkdir(parents=True)
    (project / "firmware_helpers" / "__init__.py").write_text("MINE = True\n")
    (project / "conftest.py").write_text("")  # rootdir on sys.path: the user's package first
    (project / "test_user.py").write_text(USER_TEST)
    (project / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n  - {{name: sim, emulator: microbit}}\n"
    )
    result = subprocess.run(
        [str(fresh_venv), "-m", "pytest", "-p", "no:cacheprovider", "--farm", "farm.yaml", "-v"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_a_users_mypy_strict_sees_the_types(fresh_venv: Path, tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    (tmp_path / "user.py").write_text(USER_TYPED)
    bad = tmp_path / "bad.py"
    bad.write_text("from pytest_boardfarm import connect\n\nx: int = connect\n")
    common = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", str(fresh_venv)]
    good = subprocess.run([*common, "user.py"], cwd=tmp_path, capture_output=True, text=True)
    assert good.returncode == 0, good.stdout  # no "missing library stubs or py.typed marker"
    wrong = subprocess.run([*common, "bad.py"], cwd=tmp_path, capture_output=True, text=True)
    assert "Incompatible types in assignment" in wrong.stdout  # the types are really read
