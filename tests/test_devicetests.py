"""Device tests end to end: MicroPython test files run on emulated micro:bits (1.9.2)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .emulated import NEEDS_WEBASSEMBLY
from .test_plugin import EMULATED_FARM as FARM
from .test_plugin import outcomes, run

MATH = """\
import gc
LOG = []

def add(a, b):
    return a + b

def setup():
    LOG.append("setup")
    print("module setup ran")

def teardown():
    print("module teardown ran", LOG)

def setup_function():
    LOG.append("sf")

def teardown_function():
    LOG.append("tf")

def test_add():
    assert add(1, 2) == 3

def test_setup_ran_once():
    assert LOG == ["setup", "sf", "tf", "sf"]

def test_add_wrong():
    x = add(1, 2)
    assert x == 4

def test_error():
    add(1, None)

def test_skipped():
    raise SkipTest("no wifi on this firmware")

def test_memory():
    bytearray(30000)

def test_still_runs():
    assert "setup" in LOG
"""

FAST_ONLY = """\
boardfarm = {"tags": ["fast"], "timeout": 3}
import machine

def test_on_fast_board():
    assert machine.unique_id()

def test_hangs():
    while True:
        pass

def test_after_the_hang():
    assert 1 + 1 == 2

def test_reboots():
    machine.reset()

def test_after_the_reboot():
    assert setup_count == [1]  # RAM was cleared: the module and its setup() came again

setup_count = []

def setup():
    setup_count.append(1)
"""

NO_BOARD = """\
boardfarm = {"platform": "rp2040"}
import network

def test_wifi():
    network.WLAN()
"""

BAD_SETUP = """\
def setup():
    raise OSError("sensor not found")

def test_reads_sensor():
    pass
"""

MODULE_SKIP = """\
try:
    import network
except ImportError:
    raise SkipTest("no network module")

def test_a():
    pass

def test_b():
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path: Path) -> Path:
    (pytester.path / "farm.yaml").write_text(FARM.format(locks=tmp_path / "locks"))
    pytester.makeini("[pytest]\nboardfarm_device_tests = device\n")
    device = pytester.path / "device"
    device.mkdir()
    return device


def write(device: Path, **files: str) -> None:
    for name, text in files.items():
        (device / name.replace("__", ".")).write_text(text)


def test_function_tests_run_per_board_and_report_like_host_tests(
    project: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        project,
        test_math__py=MATH,
        test_fast__py=FAST_ONLY,
        test_pico__py=NO_BOARD,
        test_modskip__py=MODULE_SKIP,
        test_badsetup__py=BAD_SETUP,
        helper__py="import machine\n",  # no test: never collected, never imported on the host
        hello__py="print('hello')\nprint(1 + 1)\n",
        hello__py__exp="hello\n2\n",
        wrong__py="def f(n):\n    return n * 3\nprint('value', f(1))\nprint('end')\n",
        wrong__py__exp="value 2\nend\n",
        crash__py="print('before')\nx = 1\ny = x / 0\n",
        crash__py__exp="before\n",
        skipping__py="print('SKIP')\n",
        skipping__py__exp="whatever\n",
    )
    junit = pytester.path / "junit.xml"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "summary.md"))
    result = run(pytester, "--farm", "farm.yaml", "-n", "2", "--farm-junit", str(junit), "--farm-log-dir", "logs")
    got = outcomes(result)
    text = result.stdout.str()
    for board in ("sim-1", "sim-2"):
        assert got[f"device/test_math.py::test_add[{board}]"] == "PASSED"
        assert got[f"device/test_math.py::test_setup_ran_once[{board}]"] == "PASSED"
        assert got[f"device/test_math.py::test_add_wrong[{board}]"] == "FAILED"
        assert got[f"device/test_math.py::test_error[{board}]"] == "FAILED"
        assert got[f"device/test_math.py::test_skipped[{board}]"] == "SKIPPED"
        assert got[f"device/test_math.py::test_memory[{board}]"] == "FAILED"
        assert got[f"device/test_math.py::test_still_runs[{board}]"] == "PASSED"
        assert got[f"device/test_modskip.py::test_a[{board}]"] == "SKIPPED"
        assert got[f"device/test_modskip.py::test_b[{board}]"] == "SKIPPED"
        assert got[f"device/test_badsetup.py::test_reads_sensor[{board}]"] == "ERROR"  # as a failing setup_module
        assert got[f"device/hello.py::hello[{board}]"] == "PASSED"
        assert got[f"device/wrong.py::wrong[{board}]"] == "FAILED"
        assert got[f"device/crash.py::crash[{board}]"] == "FAILED"
        assert got[f"device/skipping.py::skipping[{board}]"] == "SKIPPED"
    # The boardfarm literal: fast-tagged boards only, its own deadline; no rp2040 in the farm.
    assert got["device/test_fast.py::test_on_fast_board[sim-1]"] == "PASSED"
    assert not any("test_fast.py" in nodeid and "sim-2" in nodeid for nodeid in got)
    assert got["device/test_pico.py::test_wifi[no-board]"] == "SKIPPED"
    # A hang and a reboot fail their own test; the module's next tests run (after the reboot,
    # with the module loaded again and its setup() run again).
    assert got["device/test_fast.py::test_hangs[sim-1]"] == "FAILED"
    assert got["device/test_fast.py::test_after_the_hang[sim-1]"] == "PASSED"
    assert got["device/test_fast.py::test_reboots[sim-1]"] == "FAILED"
    assert got["device/test_fast.py::test_after_the_reboot[sim-1]"] == "PASSED"
    assert "test_hangs did not finish within 3s on sim-1" in text
    assert "the board sim-1 rebooted during test_reboots" in text
    assert not any("helper.py" in nodeid for nodeid in got)

    # Failures: the board's traceback in the user's file and lines, with both sides' values.
    assert (
        "AssertionError: assert 3 == 4\n\ntraceback on sim-1:\nTraceback (most recent call last):\n"
        '  File "device/test_math.py", line 28, in test_add_wrong\n    assert x == 4\n'
        "AssertionError: assert 3 == 4\n"
    ) in text
    assert '  File "device/test_math.py", line 31, in test_error\n    add(1, None)\n' in text
    assert '  File "device/test_math.py", line 5, in add\n    return a + b\n' in text
    assert '  File "device/test_math.py", line 37, in test_memory\n' in text and "MemoryError" in text
    assert "SKIPPED [2] device/test_math.py:34: no wifi on this firmware" in text
    assert "no network module" in text
    assert '  File "device/test_badsetup.py", line 2, in setup\n    raise OSError("sensor not found")\n' in text
    # Output tests: a unified diff against the .exp file; a crash shows its traceback.
    assert "--- device/wrong.py.exp\n+++ output on sim-1\n@@ -1,2 +1,2 @@\n-value 2\n+value 3\n end\n" in text
    assert '  File "device/crash.py", line 3, in <module>\n    y = x / 0\nZeroDivisionError' in text

    # Reports as for host tests: JUnit one testcase per function per board, serial logs per test.
    suites = {s.get("name"): s for s in ET.parse(junit).getroot()}
    assert {"sim-1", "sim-2"} <= set(suites)
    names = [case.get("name") for case in suites["sim-2"].iter("testcase")]
    assert "test_add[sim-2]" in names and "test_add_wrong[sim-2]" in names and "hello[sim-2]" in names
    assert len(names) == len({n for n in got if n.endswith("[sim-2]")})
    logs = pytester.path / "logs"
    assert (logs / "sim-2" / "test_math__test_add[sim-2].log").read_text().count("module setup ran") == 1
    teardown_log = (logs / "sim-1" / "test_math__test_still_runs[sim-1].log").read_text()
    assert "module teardown ran ['setup', 'sf', 'tf'," in teardown_log
    assert "soft reboot" not in teardown_log  # the functions of a module share its RAM: no reset between them
    assert "soft reboot" in (logs / "sim-2" / "hello__hello[sim-2].log").read_text()  # each output test: a reset
    assert re.search(r"sim-1\s+microbit\s+\d+\s+\d+\s+1\s+\d+", text)  # the per-board table: one error
    summary = (pytester.path / "summary.md").read_text()
    assert "| `device.test_math::test_add_wrong` | ❌ | ❌ |" in summary
    assert "- **test_add_wrong[sim-1]** on `sim-1`: AssertionError: assert 3 == 4" in summary
    assert (
        "::error file=device/test_math.py,line=28,title=test_add_wrong[sim-1] on sim-1%3A AssertionError%3A assert 3 == 4::"
        in text
    )


# Valid Python that MicroPython 1.9 (the micro:bit's) cannot compile: f-strings came in 1.17.
SYNTAX_IN_BODY = """\
import gc


def test_fine():
    assert gc.mem_free() > 0


def test_fstring():
    x = 1
    s = f"{x}"
    assert s == "1"


def test_after():
    assert 1 + 1 == 2
"""
SYNTAX_AT_TOP = """\
def test_first():
    pass


TABLE = [1, 2, 3]
NAME = f"{TABLE}"


def test_second():
    pass
"""


def test_a_board_side_syntax_error_names_the_users_file_and_line(
    project: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The board compiles each part of the module as ``<stdin>`` (or ``<string>`` when staged),
    counting lines from the part's start: its SyntaxError is mapped back like any frame."""
    write(project, test_syntax_body__py=SYNTAX_IN_BODY, test_syntax_top__py=SYNTAX_AT_TOP)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "summary.md"))  # ::error annotations: the line
    result = run(pytester, "--farm", "farm.yaml", "--board", "sim-1")
    assert outcomes(result) == {
        "device/test_syntax_body.py::test_fine[sim-1]": "PASSED",
        "device/test_syntax_body.py::test_fstring[sim-1]": "FAILED",
        "device/test_syntax_body.py::test_after[sim-1]": "PASSED",
        "device/test_syntax_top.py::test_first[sim-1]": "ERROR",  # loading the module: as a failing setup
        "device/test_syntax_top.py::test_second[sim-1]": "ERROR",
    }
    text = result.stdout.str()
    # the failure sections only: under CI=true pytest's short summary repeats the messages in full
    sections = text.partition("short test summary info")[0]
    shown = re.findall(r"traceback on sim-1:\n(.*?)\n(?:-{3,}|_{3,}|={3,})", sections, re.S)
    assert len(shown) == 3 and not any("<stdin>" in t or "<string>" in t for t in shown)  # the serial log has them
    assert (
        "traceback on sim-1:\nTraceback (most recent call last):\n"
        '  File "device/test_syntax_body.py", line 10\n    s = f"{x}"\nSyntaxError: '
    ) in text
    assert (
        "traceback on sim-1:\nTraceback (most recent call last):\n"
        '  File "device/test_syntax_top.py", line 6\n    NAME = f"{TABLE}"\nSyntaxError: '
    ) in text
    assert "::error file=device/test_syntax_body.py,line=10,title=test_fstring[sim-1]" in text
    assert "::error file=device/test_syntax_top.py,line=6,title=test_first[sim-1]" in text
    assert "::error file=device/test_syntax_top.py,line=6,title=test_second[sim-1]" in text


def test_fifty_functions_run_on_a_micro_bit(project: Path, pytester: pytest.Pytester) -> None:
    body = "".join(
        f"def test_{i:02d}():\n    values = [x * {i} for x in range(8)]\n    assert sum(values) == {28 * i}\n"
        f"    assert len(values) == 8, 'eight values'\n    assert twice({i}) == {2 * i}\n\n"
        for i in range(50)
    )
    write(project, test_fifty__py="import gc\n\ndef twice(n):\n    return n * 2\n\n" + body)
    result = run(pytester, "--farm", "farm.yaml", "--board", "sim-1")
    result.assert_outcomes(passed=50)


def test_k_and_x_select_and_stop_device_tests(project: Path, pytester: pytest.Pytester) -> None:
    write(project, test_math__py=MATH)
    selected = outcomes(run(pytester, "--farm", "farm.yaml", "--board", "sim-2", "-k", "add and not wrong"))
    assert selected == {"device/test_math.py::test_add[sim-2]": "PASSED"}
    stopped = run(pytester, "--farm", "farm.yaml", "--board", "sim-2", "-x")
    assert outcomes(stopped) == {
        "device/test_math.py::test_add[sim-2]": "PASSED",
        "device/test_math.py::test_setup_ran_once[sim-2]": "PASSED",
        "device/test_math.py::test_add_wrong[sim-2]": "FAILED",
    }


def test_last_failed_reruns_only_the_failed_device_tests(project: Path, pytester: pytest.Pytester) -> None:
    write(project, test_math__py=MATH)
    args = ("-rA", "-v", "--farm", "farm.yaml", "--board", "sim-2")
    pytester.runpytest_subprocess(*args, timeout=120)  # with the cache, for --lf
    again = pytester.runpytest_subprocess(*args, "--lf", "-p", "no:randomly", timeout=120)
    assert set(outcomes(again)) == {
        "device/test_math.py::test_add_wrong[sim-2]",
        "device/test_math.py::test_error[sim-2]",
        "device/test_math.py::test_memory[sim-2]",
    }


def test_device_files_are_never_imported_on_the_host(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nboardfarm_device_tests = device\n")
    device = pytester.path / "device"
    device.mkdir()
    write(device, test_board_only__py="import machine\n\ndef test_pin():\n    machine.Pin(1)\n", x__py="raise X\n")
    result = run(pytester, "--collect-only", "-q")
    assert "<Function test_pin>" in result.stdout.str()
    assert result.ret == 0


def test_device_paths_may_be_globs_and_single_files(pytester: pytest.Pytester) -> None:
    """README: "Name the directories (files, globs; relative to the rootdir) in the ini file"."""
    pytester.makeini("[pytest]\nboardfarm_device_tests =\n    boards/*/device\n    extra/test_one.py\n")
    for path in ("boards/a/device/test_a.py", "boards/b/device/test_b.py", "extra/test_one.py"):
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(f"import machine\n\ndef test_{Path(path).stem[5:]}():\n    pass\n")
    result = run(pytester, "--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    text = result.stdout.str()
    for name in ("test_a", "test_b", "test_one"):
        assert f"<Function {name}>" in text


ELSEWHERE = "import machine\nraise RuntimeError('imported on the host')\n\ndef test_far():\n    pass\n"


def test_symlinked_directories_in_a_device_path_are_not_followed(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A link to a directory, inside or outside the device path, is never walked: its files
    are neither sent to boards nor, being outside the device path, imported on the host."""
    pytester.makeini("[pytest]\nboardfarm_device_tests = device\n")
    device = pytester.path / "device"
    (device / "sub").mkdir(parents=True)
    write(device, test_ok__py="def test_ok():\n    pass\n")
    write(device / "sub", test_sub__py="def test_sub():\n    pass\n")
    elsewhere = tmp_path / "elsewhere"  # outside the rootdir
    elsewhere.mkdir()
    write(elsewhere, test_elsewhere__py=ELSEWHERE)
    (device / "linked").symlink_to(elsewhere, target_is_directory=True)
    (device / "alias").symlink_to(device / "sub", target_is_directory=True)
    result = run(pytester, "--collect-only", "-qq")
    text = result.stdout.str()
    assert result.ret == 0, text
    assert sorted(line for line in result.outlines if "::" in line) == [
        "device/sub/test_sub.py::test_sub",
        "device/test_ok.py::test_ok",
    ]
    assert "imported on the host" not in text and "machine" not in text
    assert re.search(r"device/alias: a symlinked directory in a device test path is not followed", text)
    assert re.search(r"device/linked: a symlinked directory in a device test path is not followed", text)
    # Named on the command line, the file is still never imported on the host: a collection error.
    result = run(pytester, "--collect-only", "-qq", "device/linked/test_elsewhere.py")
    text = result.stdout.str()
    assert "imported on the host" not in text and "No module named 'machine'" not in text
    assert (
        "device/linked/test_elsewhere.py is reached through a symlink that leads outside the device test path" in text
    )
    assert result.ret == 2


def test_bad_selection_literal_is_a_collection_error(project: Path, pytester: pytest.Pytester) -> None:
    write(project, test_bad__py="import gc\nboardfarm = {'platfrom': 'rp2040'}\n\ndef test_a():\n    pass\n")
    result = run(pytester, "--farm", "farm.yaml", "--collect-only")
    assert (
        "device/test_bad.py:2: boardfarm: unknown argument 'platfrom' (did you mean 'platform'?)" in result.stdout.str()
    )
    assert result.ret == 2


def test_ini_entry_that_matches_nothing_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nboardfarm_device_tests = devce\n")
    result = run(pytester, "--collect-only")
    assert "ini option boardfarm_device_tests: 'devce' matches nothing under the rootdir" in result.stderr.str()
    assert result.ret == 4


CURRENT = """\
def test_values():
    assert {"a": 1} == {"a": 2}

def test_hangs_deaf_to_ctrl_c():
    while True:
        pass

def test_after_the_restart():
    assert 1 < 2

def test_exits():
    import sys
    sys.exit()

def test_after_the_exit():
    assert "x" in "xyz"
"""


@NEEDS_WEBASSEMBLY
def test_device_tests_run_on_current_micropython(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The runner on MicroPython 1.27 (WebAssembly port): SystemExit soft-reboots there, and a
    busy loop ignores Ctrl-C, so the recovery ladder restarts the board; the next tests run."""
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n  - {{name: new, emulator: webassembly, timeout: 3}}\n"
    )
    pytester.makeini("[pytest]\nboardfarm_device_tests = device\n")
    device = pytester.path / "device"
    device.mkdir()
    write(device, test_current__py=CURRENT, skipx__py="print('SKIP')\nraise SystemExit\n", skipx__py__exp="x\n")
    result = run(pytester, "--farm", "farm.yaml")
    assert outcomes(result) == {
        "device/skipx.py::skipx[new]": "SKIPPED",
        "device/test_current.py::test_values[new]": "FAILED",
        "device/test_current.py::test_hangs_deaf_to_ctrl_c[new]": "FAILED",
        "device/test_current.py::test_after_the_restart[new]": "PASSED",
        "device/test_current.py::test_exits[new]": "FAILED",
        "device/test_current.py::test_after_the_exit[new]": "PASSED",
    }
    text = result.stdout.str()
    assert "AssertionError: assert {'a': 1} == {'a': 2}" in text
    assert '  File "device/test_current.py", line 2, in test_values\n' in text
    assert "test_hangs_deaf_to_ctrl_c did not finish within 3s on new" in text
    assert "the board new rebooted during test_exits" in text


def test_the_first_module_on_a_board_gets_a_soft_reset_too(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """README: with --farm-reset test, "a soft reset ... before the first test of each module",
    the first module a board runs included (it was run on whatever the board held)."""
    (pytester.path / "farm.yaml").write_text(FARM.format(locks=tmp_path / "locks"))
    pytester.makeini("[pytest]\nboardfarm_device_tests = device\n")
    device = pytester.path / "device"
    device.mkdir()
    write(device, test_one__py="def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    run(pytester, "--farm", "farm.yaml", "--board", "sim-1", "--farm-log-dir", "logs").assert_outcomes(passed=2)
    logs = pytester.path / "logs" / "sim-1"
    assert "soft reboot" in (logs / "test_one__test_a[sim-1].log").read_text()
    assert "soft reboot" not in (logs / "test_one__test_b[sim-1].log").read_text()  # the module's RAM is shared


def test_a_run_stopped_by_x_still_runs_the_modules_teardown(project: Path, pytester: pytest.Pytester) -> None:
    """README: teardown() runs once per module per board. With -x the module's last test on
    the board never came, so its teardown (a pin switched off, a file closed) was skipped."""
    write(
        project,
        test_stop__py="def teardown():\n    print('module teardown ran')\n\n"
        "def test_fails():\n    assert False\n\ndef test_never_runs():\n    pass\n",
    )
    result = run(pytester, "--farm", "farm.yaml", "--board", "sim-1", "-x", "-p", "no:xdist", "--farm-log-dir", "logs")
    assert outcomes(result) == {"device/test_stop.py::test_fails[sim-1]": "FAILED"}
    log = (pytester.path / "logs" / "sim-1" / "test_stop__test_fails[sim-1].log").read_text()
    assert "module teardown ran" in log
