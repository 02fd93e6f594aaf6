"""What a process imports: every xdist worker imports the plugin, so what only the
controller, the command line or a labgrid farm needs stays out of its start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Imported only where used: the reports (controller), xdist's scheduler (controller),
# labgrid's event loop (places), USB serial numbers, the command line's ini search,
# the device tests' parser and runner (a project with device tests imports them at collection).
NOT_AT_IMPORT = [
    "asyncio",
    "ssl",
    "concurrent.futures",
    "junit_xml",
    "xml.dom.minidom",
    "xdist.scheduler",
    "serial.tools.list_ports",
    "configparser",
    "difflib",
    "pytest_boardfarm.reporting",
    "pytest_boardfarm.junit",
    "pytest_boardfarm.github",
    "pytest_boardfarm.scheduling",
    "pytest_boardfarm.htmlreport",
    "pytest_boardfarm.devmodule",
    "pytest_boardfarm.devrunner",
    "pytest_boardfarm.devassert",
]


def imported_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after ``statement`` (pytest imported first)."""
    code = f"import sys, json, pytest\nbase = set(sys.modules)\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("module", NOT_AT_IMPORT)
def test_plugin_import_leaves_out(module: str) -> None:
    assert module not in imported_after("import pytest_boardfarm.plugin")


def test_what_is_left_out_is_there_when_used() -> None:
    """The lazily imported modules still import (a typo in a local import shows only when used)."""
    statement = "\n".join(
        [
            "import pytest_boardfarm.plugin",
            "from pytest_boardfarm import reporting, junit, github, scheduling, htmlreport, places",
            "from pytest_boardfarm.pool import find_serial_number",
            "from pytest_boardfarm.farmfile import _read_pyproject, _read_ini",
            "from pytest_boardfarm import devmodule, devrunner, devassert",
        ]
    )
    assert {"pytest_boardfarm.junit", "pytest_boardfarm.scheduling"} <= imported_after(statement)
