"""What a process imports: every xdist worker imports the plugin, so what only the
controller, the command line or a labgrid farm needs stays out of its start-up."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

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


def test_precompile_caches_every_module_for_python_and_for_pytest() -> None:
    """scripts/precompile.py (scripts/setup runs it): each module of the package has Python's
    .pyc and, where pytest rewrites the plugin's modules (as in this process), pytest's
    rewritten one, the only one pytest reads: without it every xdist worker compiles the
    package again. Nothing of the MicroPython helpers is compiled."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "precompile.py")], cwd=ROOT, check=True, capture_output=True)
    loader = sys.modules["pytest_boardfarm.plugin"].__spec__.loader
    rewrites = type(loader).__name__ == "AssertionRewritingHook"  # pytest 7.4 does not, in an editable install
    pytest_tag = f"{sys.implementation.cache_tag}-pytest-{pytest.__version__}"
    missing = []
    for source in sorted((ROOT / "pytest_boardfarm").rglob("*.py")):
        expected = [Path(importlib.util.cache_from_source(str(source)))]
        if rewrites:
            expected.append(source.parent / "__pycache__" / f"{source.stem}.{pytest_tag}.pyc")
        missing += [str(pyc.relative_to(ROOT)) for pyc in expected if not pyc.is_file()]
    assert missing == []
    assert not (ROOT / "firmware_helpers" / "__pycache__").exists()


@pytest.mark.parametrize("addopts", ["--farm /nonexistent/farm.yaml", "-p no:boardfarm"])
def test_precompile_is_not_a_test_run_of_the_users(addopts: str) -> None:
    """A developer's PYTEST_ADDOPTS is for their test runs: a farm file not there (yet)
    failed scripts/setup; the plugin left out made pytest rewrite none of its modules."""
    env = {**os.environ, "PYTEST_ADDOPTS": addopts}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "precompile.py")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "boardfarm" not in done.stdout + done.stderr  # not a word about the farm or the plugin


CONTROLLER_ONLY = [
    "pytest_boardfarm.reporting",
    "pytest_boardfarm.junit",
    "pytest_boardfarm.github",
    "pytest_boardfarm.scheduling",
    "pytest_boardfarm.htmlreport",
    "junit_xml",
]


def _one_test_on_one_worker(pytester: pytest.Pytester, conftest: str) -> None:
    """A farm of one emulated board, one test that needs no board, ``-n 1``, ``conftest`` beside it."""
    farm = pytester.path / "farm.yaml"
    farm.write_text(f"locks:\n  dir: {pytester.path / 'locks'}\nboards:\n  - name: sim-1\n    emulator: microbit\n")
    pytester.makeconftest(conftest)
    pytester.makepyfile("def test_no_board():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--farm", str(farm), "-n", "1", timeout=120)
    result.assert_outcomes(passed=1)


def test_a_worker_with_a_farm_leaves_out_what_only_the_controller_uses(pytester: pytest.Pytester) -> None:
    """Reports and xdist's scheduler live on the controller: a worker, farm loaded and
    session configured, never imports them (each would be start-up CPU on every worker)."""
    _one_test_on_one_worker(
        pytester,
        "import json, os, sys\n"
        "def pytest_sessionfinish(session):\n"
        "    who = getattr(session.config, 'workerinput', {}).get('workerid', 'controller')\n"
        "    with open(os.path.join(os.path.dirname(__file__), who + '.json'), 'w') as out:\n"
        "        json.dump(sorted(sys.modules), out)\n",
    )
    controller = set(json.loads((pytester.path / "controller.json").read_text()))
    worker = set(json.loads((pytester.path / "gw0.json").read_text()))
    assert {"pytest_boardfarm.reporting", "pytest_boardfarm.scheduling"} <= controller
    assert "pytest_boardfarm.session" in worker
    assert sorted(worker & set(CONTROLLER_ONLY)) == []


def test_a_worker_freezes_its_objects_when_its_session_is_over(pytester: pytest.Pytester) -> None:
    """A worker's interpreter skips the last collection of every object (the controller's
    wait for its workers to end); the controller, which may be a user's own process, does not."""
    _one_test_on_one_worker(
        pytester,
        "import atexit, gc, os\n"
        "def pytest_configure(config):\n"
        "    who = getattr(config, 'workerinput', {}).get('workerid', 'controller')\n"
        "    path = os.path.join(os.path.dirname(__file__), who + '.frozen')\n"
        "    def write():\n"
        "        with open(path, 'w') as out:\n"
        "            out.write(str(gc.get_freeze_count()))\n"
        "    atexit.register(write)\n",
    )
    assert int((pytester.path / "gw0.frozen").read_text()) > 1000
    assert int((pytester.path / "controller.frozen").read_text()) == 0
