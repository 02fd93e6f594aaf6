"""The farm's run settings as pytest users expect them: command line, then ini file, then default.

Paths follow pytest's own conventions: one given on the command line is relative
to the directory pytest was started in (like ``--junitxml`` and ``--basetemp``),
one in an ini file is relative to that ini file (like pytest's ``paths`` ini
options), and the default serial log directory is under the rootdir (like
``.pytest_cache``), wherever pytest was started.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .inventory import seconds, seconds_rule

RESET_MODES = ("test", "module", "session", "never")
DEFAULT_LOG_DIR = "boardfarm-results/serial-logs"
DEFAULT_LOCK_TIMEOUT = 60.0
DEFAULT_RESET = "test"


@dataclass(frozen=True)
class IniOption:
    """One ini option and the command-line option it is the default of."""

    name: str
    option: str  # the command-line option's dest
    help: str
    type: str | None = None


INI_OPTIONS = (
    IniOption("boardfarm_lock_timeout", "farm_lock_timeout", "default for --farm-lock-timeout (seconds)"),
    IniOption("boardfarm_reset", "farm_reset", f"default for --farm-reset ({', '.join(RESET_MODES)})"),
    IniOption("boardfarm_log_dir", "farm_log_dir", "default for --farm-log-dir, relative to the ini file"),
    IniOption("boardfarm_junit", "farm_junit", "default for --farm-junit, relative to the ini file"),
    IniOption("boardfarm_required", "farm_required", "like --farm-required", "bool"),
)


def add_ini_options(parser: pytest.Parser) -> None:
    for ini in INI_OPTIONS:
        if ini.type == "bool":
            parser.addini(ini.name, ini.help, type="bool", default=False)
        else:
            parser.addini(ini.name, ini.help)


def _ini_text(config: pytest.Config, name: str) -> str:
    return str(config.getini(name) or "").strip()


def _ini_base(config: pytest.Config) -> Path:
    return config.inipath.parent if config.inipath is not None else config.rootpath


def _checked(config: pytest.Config, name: str, parse: Callable[[str], Any], rule: str) -> Any:
    text = _ini_text(config, name)
    try:
        return parse(text)
    except ValueError:
        where = f" in {config.inipath}" if config.inipath else ""
        raise pytest.UsageError(f"ini option {name}{where}: expected {rule}, got {text!r}") from None


def lock_timeout(config: pytest.Config) -> float:
    option = config.getoption("farm_lock_timeout")
    if option is not None:
        return float(option)
    if _ini_text(config, "boardfarm_lock_timeout"):
        rule = seconds_rule(zero_ok=True)
        return float(_checked(config, "boardfarm_lock_timeout", lambda t: seconds(t, zero_ok=True), rule))
    return DEFAULT_LOCK_TIMEOUT


def _reset_mode(text: str) -> str:
    if text not in RESET_MODES:
        raise ValueError(text)
    return text


def reset_mode(config: pytest.Config) -> str:
    option = config.getoption("farm_reset")
    if option is not None:
        return str(option)
    if _ini_text(config, "boardfarm_reset"):
        return str(_checked(config, "boardfarm_reset", _reset_mode, f"one of {', '.join(RESET_MODES)}"))
    return DEFAULT_RESET


def _path(config: pytest.Config, option: str, ini: str, default: str | None) -> Path | None:
    """A path setting: the command line's (relative to the invocation directory), else
    the ini file's (relative to it), else the default (relative to the rootdir); '' for none."""
    given = config.getoption(option)
    if given is not None:
        return Path(config.invocation_params.dir, given) if given else None
    text = _ini_text(config, ini)
    if text:
        return _ini_base(config) / text
    return config.rootpath / default if default else None


def log_dir(config: pytest.Config) -> Path | None:
    """Where the serial logs go, or None for none (``--farm-log-dir ''``)."""
    return _path(config, "farm_log_dir", "boardfarm_log_dir", DEFAULT_LOG_DIR)


def junit_path(config: pytest.Config) -> Path | None:
    """The per-board JUnit file, or None when none was asked for."""
    return _path(config, "farm_junit", "boardfarm_junit", None)


def farm_required(config: pytest.Config) -> bool:
    """Is "no farm configured" an error (CI), rather than board tests skipped (a laptop)?"""
    return bool(config.getoption("farm_required") or config.getini("boardfarm_required"))


def check(config: pytest.Config) -> None:
    """Bad ini values are a usage error before anything runs, not an error in every test."""
    lock_timeout(config)
    reset_mode(config)


def shown(path: Path, config: pytest.Config) -> str:
    """A path as the terminal shows it: relative to where pytest was started, when it is below."""
    try:
        return str(path.relative_to(config.invocation_params.dir))
    except ValueError:
        return str(path)
