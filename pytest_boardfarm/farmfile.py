"""Which farm inventory a run uses: one rule for pytest and the ``boardfarm`` command.

The order is ``--farm PATH``, then ``$BOARDFARM_INVENTORY``, then the ini option
``boardfarm_inventory``, which is relative to the ini file that sets it (pytest's
convention for paths in ini files), not to the current directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "BOARDFARM_INVENTORY"
INI_KEY = "boardfarm_inventory"


@dataclass(frozen=True)
class FarmFile:
    """The chosen inventory and where the choice came from, for messages."""

    path: Path
    source: str  # "--farm", "$BOARDFARM_INVENTORY" or the ini file's path


def find_farm_file(
    option: str | None,
    ini_value: str | None,
    ini_file: Path | None,
    environ: Mapping[str, str] = os.environ,
) -> FarmFile | None:
    """The farm inventory by the order above, or None when none is configured."""
    if option:
        return FarmFile(Path(option), "--farm")
    if environ.get(ENV_VAR):
        return FarmFile(Path(environ[ENV_VAR]), f"${ENV_VAR}")
    if ini_value:
        base = ini_file.parent if ini_file is not None else Path.cwd()
        return FarmFile(base / ini_value, str(ini_file) if ini_file is not None else "ini")
    return None


def ini_setting(start: Path) -> tuple[str | None, Path | None]:
    """``boardfarm_inventory`` from the pytest configuration that pytest would use in ``start``.

    For the ``boardfarm`` command, which runs outside pytest. As pytest does, the
    first file found walking up from ``start`` that has a pytest section wins:
    pytest.ini, pyproject.toml ([tool.pytest.ini_options]), tox.ini, setup.cfg.
    """
    for directory in (start, *start.parents):
        for name, read in _READERS:
            candidate = directory / name
            if candidate.is_file():
                found, value = read(candidate)
                if found:
                    return value, candidate
    return None, None


Reader = Callable[[Path], tuple[bool, "str | None"]]


def _read_ini(section: str) -> Reader:
    def read(path: Path) -> tuple[bool, str | None]:
        import configparser  # the command line's search only (pytest reads its own ini)

        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error:
            return False, None
        if not parser.has_section(section):
            return path.name == "pytest.ini", None  # pytest.ini counts even without a section
        return True, parser.get(section, INI_KEY, fallback=None)

    return read


def _read_pyproject(path: Path) -> tuple[bool, str | None]:
    if sys.version_info >= (3, 11):  # imported here: the command line's search only
        import tomllib
    else:  # pragma: no cover - Python 3.10: pytest itself depends on tomli there
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False, None
    options = data.get("tool", {}).get("pytest", {}).get("ini_options")
    if not isinstance(options, dict):
        return False, None
    value = options.get(INI_KEY)
    return True, str(value) if value is not None else None


_READERS: tuple[tuple[str, Reader], ...] = (
    ("pytest.ini", _read_ini("pytest")),
    ("pyproject.toml", _read_pyproject),
    ("tox.ini", _read_ini("pytest")),
    ("setup.cfg", _read_ini("tool:pytest")),
)
