"""Good manners in a project with its own pytest setup: pytest in a subprocess, on emulated farms."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .procs import assert_no_emulators, marked
from .test_plugin import outcomes, run

ONE_BOARD = "locks: {{dir: {locks}}}\nboards:\n  - {{name: sim-1, emulator: microbit, tags: [fast]}}\n"

MIXED_SUITE = """\
def test_on_the_board(board):
    assert board.eval("1 + 1") == 2

def test_on_the_host():
    pass
"""


@pytest.fixture
def farm(pytester: pytest.Pytester, tmp_path: Path) -> Path:
    path = pytester.path / "farm.yaml"
    path.write_text(ONE_BOARD.format(locks=tmp_path / "locks"))
    return path


# -- no farm, a required farm, a farm that selects nothing ---------------------------


def test_without_a_farm_board_tests_are_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    result = run(pytester)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == 0
    assert "SKIPPED [1] test_mixed.py:1: no farm configured: pass --farm farm.yaml" in result.stdout.str()
    assert "boardfarm: results per board" not in result.stdout.str()


@pytest.mark.parametrize("how", ["option", "ini"])
def test_a_required_farm_that_is_missing_is_a_usage_error(pytester: pytest.Pytester, how: str) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    if how == "ini":
        pytester.makeini("[pytest]\nboardfarm_required = true\n")
        result = run(pytester)
    else:
        result = run(pytester, "--farm-required")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no farm configured, and a farm is required" in result.stderr.str()
    assert run(pytester, "--farm-required", "--help").ret == pytest.ExitCode.OK  # help is always there


def test_a_required_farm_that_is_configured_runs(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    run(pytester, "--farm", str(farm), "--farm-required").assert_outcomes(passed=2)


def test_a_farm_with_no_usable_board_is_an_error_not_a_skip(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n  - {{name: gone, port: '{tmp_path / 'no-such-tty'}', timeout: 2}}\n"
    )
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    result = run(pytester, "--farm", "farm.yaml")
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("args", [["--board-tag", "nope"], ["--board", "sim-1", "--board-tag", "slow"]])
def test_a_command_line_that_selects_no_board_is_a_usage_error(
    pytester: pytest.Pytester, farm: Path, args: list[str]
) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    result = run(pytester, "--farm", str(farm), *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no board in the farm matches the command line's" in result.stderr.str()
    assert "(tags in the farm: fast)" in result.stderr.str()


def test_a_marker_that_matches_no_board_is_still_a_skip(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(
        test_marked="import pytest\n\n@pytest.mark.board(tags=['wifi'])\ndef test_wifi(board):\n    pass\n"
    )
    result = run(pytester, "--farm", str(farm))
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.OK


# -- a project's own `board` fixture ---------------------------------------------------


def test_a_projects_own_board_fixture_is_left_alone_with_a_warning(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef board():\n    return 'the project board'\n")
    pytester.makepyfile(test_own="def test_own(board):\n    assert board == 'the project board'\n")
    result = run(pytester, "--farm", str(farm))
    result.assert_outcomes(passed=1, warnings=1)
    assert "test_own.py::test_own PASSED" in result.stdout.str()  # once, not once per farm board
    out = result.stdout.str()
    assert "FarmWarning: the 'board' fixture of this test is the project's own (conftest.py:3)" in out
    assert "not run on the farm's boards" in out


def test_a_project_fixture_that_builds_on_the_plugins_board_is_still_parametrized(
    pytester: pytest.Pytester, farm: Path
) -> None:
    pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef board(board):\n    board.exec('x = 42')\n    return board\n"
    )
    pytester.makepyfile(test_own="def test_own(board):\n    assert board.eval('x') == 42\n")
    result = run(pytester, "--farm", str(farm), "-W", "error::pytest_boardfarm.manners.FarmWarning")
    result.assert_outcomes(passed=1)
    assert outcomes(result) == {"test_own.py::test_own[sim-1]": "PASSED"}


# -- --fixtures, --collect-only ----------------------------------------------------------


@pytest.mark.parametrize("option", ["--fixtures", "--fixtures-per-test", "--collect-only"])
def test_no_per_board_table_when_no_test_is_meant_to_run(pytester: pytest.Pytester, farm: Path, option: str) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    with marked() as mark:
        result = run(pytester, "--farm", str(farm), option)
    assert_no_emulators(mark)
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    assert "boardfarm: results per board" not in out
    assert not any(line.startswith("ERROR") or " error" in line for line in out.splitlines()[-3:])


# -- warnings as errors --------------------------------------------------------------------


def test_a_clean_run_with_warnings_as_errors_passes(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    for args in ([], ["-n", "2"]):
        result = run(pytester, "--farm", str(farm), *args)
        result.assert_outcomes(passed=2)
        assert result.ret == pytest.ExitCode.OK
        assert "ResourceWarning" not in result.stdout.str() + result.stderr.str()


# -- JUnit and pytest-html -------------------------------------------------------------


def test_pytests_junitxml_carries_the_board_info_as_json(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    run(pytester, "--farm", str(farm), "--junitxml", "out/junit.xml").assert_outcomes(passed=2)
    root = ET.parse(pytester.path / "out" / "junit.xml").getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == "test_on_the_board[sim-1]")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["boardfarm.board"] == "sim-1"
    info = json.loads(properties["boardfarm.info"] or "")
    assert info["platform"] == "microbit" and info["health"] == "ok"
    assert "MicroPython v1.9.2" in info["firmware"]


def test_pytest_html_has_a_board_column_and_the_farm(pytester: pytest.Pytester, farm: Path) -> None:
    pytest.importorskip("pytest_html")
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    for args in ([], ["-n", "2"]):
        run(pytester, "--farm", str(farm), "--html", "report.html", *args).assert_outcomes(passed=2)
        text = (pytester.path / "report.html").read_text()
        assert '<th class="sortable" data-column-type="board">Board</th>' in text
        assert "col-board\\&#34;&gt;sim-1&lt;/td&gt;" in text
        assert "&#34;Board farm&#34;: {&#34;inventory&#34;:" in text
        assert "&#34;sim-1&#34;: &#34;microbit, micro:bit v1.0.1" in text  # the firmware the board told


# -- settings as ini options, command line first; paths as pytest has them ------------------


def test_ini_options_and_the_command_line_winning(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makeini(
        "[pytest]\nboardfarm_inventory = farm.yaml\nboardfarm_reset = never\n"
        "boardfarm_log_dir = ini-logs\nboardfarm_junit = ini-results/junit.xml\nboardfarm_lock_timeout = 5\n"
    )
    pytester.makepyfile(
        test_state="def test_set(board):\n    board.exec('kept = 1')\n\n"
        "def test_get(board):\n    assert board.eval('kept') == 1\n"
    )
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=2)  # boardfarm_reset = never: state kept
    assert (pytester.path / "ini-results" / "junit.xml").is_file()
    assert (pytester.path / "ini-logs" / "sim-1").is_dir()
    result = run(pytester, "--farm-reset", "test", "--farm-log-dir", "cli-logs", "--farm-junit", "cli.xml")
    result.assert_outcomes(passed=1, failed=1)  # the command line's reset wins: state gone
    assert (pytester.path / "cli.xml").is_file() and (pytester.path / "cli-logs" / "sim-1").is_dir()


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [("boardfarm_reset", "sometimes", "one of test, module, session, never"), ("boardfarm_lock_timeout", "soon", "")],
)
def test_bad_ini_settings_are_a_usage_error(
    pytester: pytest.Pytester, farm: Path, name: str, value: str, rule: str
) -> None:
    pytester.makeini(f"[pytest]\n{name} = {value}\n")
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    result = run(pytester, "--farm", str(farm))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ini option {name} in " in result.stderr.str() and f"got {value!r}" in result.stderr.str()
    assert rule in result.stderr.str()


def test_ini_paths_are_relative_to_the_ini_file_given_with_c(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """-c config/pytest.ini, run from elsewhere: the farm and the results are found beside the ini file."""
    config = pytester.path / "config"
    config.mkdir()
    (config / "farm.yaml").write_text(ONE_BOARD.format(locks=tmp_path / "locks"))
    (config / "pytest.ini").write_text(
        "[pytest]\nboardfarm_inventory = farm.yaml\nboardfarm_junit = results/junit.xml\nboardfarm_log_dir = logs\n"
    )
    pytester.makepyfile(test_mixed=MIXED_SUITE)
    result = run(pytester, "-c", "config/pytest.ini", "--rootdir", str(pytester.path), "test_mixed.py")
    result.assert_outcomes(passed=2)
    assert (config / "results" / "junit.xml").is_file()
    assert (config / "logs" / "sim-1").is_dir()
    assert not (pytester.path / "results").exists() and not (pytester.path / "logs").exists()


def test_ini_inventory_in_a_subdirectory_project(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The ini file of a project in a subdirectory, pytest started above it: paths from the ini file."""
    project = pytester.path / "project"
    (project / "hw").mkdir(parents=True)
    (project / "hw" / "farm.yaml").write_text(ONE_BOARD.format(locks=tmp_path / "locks"))
    (project / "pytest.ini").write_text("[pytest]\nboardfarm_inventory = hw/farm.yaml\n")
    (project / "test_mixed.py").write_text(MIXED_SUITE)
    result = run(pytester, "project/test_mixed.py")
    result.assert_outcomes(passed=2)
    # no log dir configured: under the rootdir (the project), not where pytest was started
    assert (project / "boardfarm-results" / "serial-logs" / "sim-1").is_dir()
    assert not (pytester.path / "boardfarm-results").exists()
    assert "serial logs: project/boardfarm-results/serial-logs/<board>/" in result.stdout.str()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_command_line_paths_are_relative_to_where_pytest_started(
    pytester: pytest.Pytester, tmp_path: Path, workers: list[str]
) -> None:
    project = pytester.path / "project"
    project.mkdir()
    (project / "farm.yaml").write_text(ONE_BOARD.format(locks=tmp_path / "locks"))
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_mixed.py").write_text(MIXED_SUITE)
    result = run(
        pytester,
        "project/test_mixed.py",
        "--farm",
        "project/farm.yaml",
        "--farm-junit",
        "out/junit.xml",
        "--farm-log-dir",
        "out/logs",
        "--junitxml",
        "out/pytest.xml",
        *workers,
    )
    result.assert_outcomes(passed=2)
    out = pytester.path / "out"  # like pytest's own --junitxml
    assert (out / "pytest.xml").is_file() and (out / "junit.xml").is_file() and (out / "logs" / "sim-1").is_dir()
