"""Which farm inventory is used: --farm, then the environment, then the ini file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_boardfarm.farmfile import ENV_VAR, FarmFile, find_farm_file, ini_setting


def test_option_then_environment_then_ini(tmp_path: Path) -> None:
    ini = tmp_path / "pytest.ini"
    env = {ENV_VAR: "/env/farm.yaml"}
    assert find_farm_file("cli.yaml", "ini.yaml", ini, env) == FarmFile(Path("cli.yaml"), "--farm")
    assert find_farm_file(None, "ini.yaml", ini, env) == FarmFile(Path("/env/farm.yaml"), f"${ENV_VAR}")
    assert find_farm_file(None, "ini.yaml", ini, {}) == FarmFile(tmp_path / "ini.yaml", str(ini))
    assert find_farm_file(None, None, None, {}) is None


def test_ini_path_is_relative_to_the_ini_file_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nboardfarm_inventory = "lab/farm.yaml"\n')
    deeper = tmp_path / "tests" / "unit"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    value, ini = ini_setting(deeper)
    assert (value, ini) == ("lab/farm.yaml", tmp_path / "pyproject.toml")
    found = find_farm_file(None, value, ini, {})
    assert found is not None and found.path == tmp_path / "lab" / "farm.yaml"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest]\nboardfarm_inventory = f.yaml\n"),
        ("tox.ini", "[pytest]\nboardfarm_inventory = f.yaml\n"),
        ("setup.cfg", "[tool:pytest]\nboardfarm_inventory = f.yaml\n"),
    ],
)
def test_each_kind_of_ini_file(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert ini_setting(tmp_path) == ("f.yaml", tmp_path / name)


def test_the_first_file_with_a_pytest_section_wins_as_in_pytest(tmp_path: Path) -> None:
    # pyproject.toml without a pytest table does not stop the search; a pytest.ini does, even without the key.
    (tmp_path / "setup.cfg").write_text("[tool:pytest]\nboardfarm_inventory = outer.yaml\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert ini_setting(inner) == ("outer.yaml", tmp_path / "setup.cfg")
    (inner / "pytest.ini").write_text("[pytest]\n")
    assert ini_setting(inner) == (None, inner / "pytest.ini")
