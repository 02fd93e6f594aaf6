"""The pytest plugin end to end: pytest in a subprocess, on emulated farms."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm import connect, plugin
from pytest_boardfarm.emulator import MicrobitEmulator, start_many
from pytest_boardfarm.locks import BoardLock

EMULATED_FARM = """\
locks: {{dir: {locks}}}
boards:
  - name: sim-1
    emulator: microbit
    tags: [fast]
  - name: sim-2
    emulator: microbit
"""

SUITE = """\
import pytest

def test_eval(board):
    assert board.eval("1 + 1") == 2

@pytest.mark.board(tags=["fast"])
def test_fast_only(board):
    assert board.name == "sim-1"

@pytest.mark.board(platform="rp2040", tags=["wifi"])
def test_needs_pico(board):
    pass

def test_fails(board):
    board.exec("print('about to divide')")
    board.exec("1/0")

def test_state_is_reset(board):
    board.exec("leftover = 1")

def test_state_was_reset(board):
    with pytest.raises(Exception, match="NameError"):
        board.exec("leftover")

def test_without_board():
    pass
"""


@pytest.fixture
def farm(pytester: pytest.Pytester, tmp_path: Path) -> Path:
    path = pytester.path / "farm.yaml"
    path.write_text(EMULATED_FARM.format(locks=tmp_path / "locks"))
    return path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-v", *args, timeout=120)


_OUTCOME = re.compile(r"(PASSED|FAILED|SKIPPED|ERROR)")
_NODEID = re.compile(r"(\S+\.py::\S+)")


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """test id -> PASSED/FAILED/SKIPPED/ERROR, from -v lines."""
    found = {}
    for line in result.outlines:
        outcome, nodeid = _OUTCOME.search(line), _NODEID.search(line)
        if outcome and nodeid and not line.startswith(("E ", " ")):
            found[nodeid.group(1)] = outcome.group(1)
    return found


def test_tests_run_once_per_matching_board(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "--farm", str(farm), "--collect-only", "-qq")
    ids = [line for line in result.outlines if "::" in line]
    assert "test_suite.py::test_eval[sim-1]" in ids and "test_suite.py::test_eval[sim-2]" in ids
    assert "test_suite.py::test_fast_only[sim-1]" in ids
    assert not any("test_fast_only[sim-2]" in i for i in ids)
    assert "test_suite.py::test_needs_pico[no-board]" in ids
    assert "test_suite.py::test_without_board" in ids


def test_sequential_run_outcomes_and_reports(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "--farm", str(farm))
    got = outcomes(result)
    assert got["test_suite.py::test_eval[sim-1]"] == "PASSED"
    assert got["test_suite.py::test_fails[sim-2]"] == "FAILED"
    assert got["test_suite.py::test_state_was_reset[sim-1]"] == "PASSED"
    result.assert_outcomes(passed=8, failed=2, skipped=1)
    text = result.stdout.str()
    assert "no board matches platform='rp2040', tags=['wifi']; the farm has: sim-1 (platform=microbit" in text
    assert "serial log sim-1 (call)" in text and "about to divide" in text
    assert "ZeroDivisionError: division by zero" in text


def test_parallel_run_gives_the_same_outcomes(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    sequential = outcomes(run(pytester, "--farm", str(farm)))
    parallel_result = run(pytester, "--farm", str(farm), "-n", "auto")
    assert "created: 2/2 workers" in parallel_result.stdout.str()  # one worker per board
    assert outcomes(parallel_result) == sequential
    assert len(sequential) == 11


def test_each_board_stays_on_one_worker(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(
        test_where="""
import os, pytest
@pytest.mark.parametrize("i", range(4))
def test_where(board, i, record_property):
    print("WHERE", board.name, os.environ["PYTEST_XDIST_WORKER"])
"""
    )
    result = run(pytester, "--farm", str(farm), "-n", "2")
    pairs = set(re.findall(r"WHERE (sim-\d) (gw\d)", result.stdout.str()))
    assert len(pairs) == 2 and {board for board, _ in pairs} == {"sim-1", "sim-2"}
    result.assert_outcomes(passed=8)


WHERE_SUITE = """
import os, pytest
@pytest.mark.parametrize("i", range(3))
def test_where(board, i):
    board.exec("x = 1")
    with open(os.environ["WHERE_LOG"], "a") as f:
        f.write(f"{board.name} {os.environ['PYTEST_XDIST_WORKER']} {i}\\n")
"""


def five_boards(tmp_path: Path) -> Path:
    path = tmp_path / "farm5.yaml"
    path.write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n"
        + "".join(f"  - {{name: sim-{n}, emulator: microbit, timeout: 30}}\n" for n in range(1, 6))
    )
    return path


def runs_per_worker(log: Path) -> dict[str, list[tuple[str, int]]]:
    """worker -> (board, i) in the order the worker ran them."""
    ran: dict[str, list[tuple[str, int]]] = {}
    for line in log.read_text().splitlines():
        board, worker, i = line.split()
        ran.setdefault(worker, []).append((board, int(i)))
    return ran


def test_workers_drive_several_boards_in_turn(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 boards on 2 workers: every test has its result, each board's tests ran on one
    worker, in order, and a worker finished one board before it started the next."""
    pytester.makepyfile(test_where=WHERE_SUITE)
    log = tmp_path / "where.log"
    monkeypatch.setenv("WHERE_LOG", str(log))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--farm", str(five_boards(tmp_path)), "-n", "2", timeout=300
    )
    result.assert_outcomes(passed=15)
    ran = runs_per_worker(log)
    assert len(ran) == 2
    for runs in ran.values():
        boards_in_turn = [board for n, (board, _) in enumerate(runs) if n == 0 or runs[n - 1][0] != board]
        assert len(boards_in_turn) == len(set(boards_in_turn))  # never back to a board it left
        for board in set(boards_in_turn):
            assert [i for b, i in runs if b == board] == [0, 1, 2]  # all of its tests, in order, here
    assert sorted({board for runs in ran.values() for board, _ in runs}) == [f"sim-{n}" for n in range(1, 6)]


def test_auto_takes_at_most_what_the_host_carries(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-n auto with more boards than the host's limit (xdist's PYTEST_XDIST_AUTO_NUM_WORKERS
    here, 8 per core and 1 per 100 MB otherwise): that many workers, and every board's tests run."""
    pytester.makepyfile(test_where=WHERE_SUITE)
    monkeypatch.setenv("WHERE_LOG", str(tmp_path / "where.log"))
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--farm", str(five_boards(tmp_path)), "-n", "auto", timeout=300
    )
    assert "created: 3/3 workers" in result.stdout.str()
    result.assert_outcomes(passed=15)
    assert len(runs_per_worker(tmp_path / "where.log")) == 3


def test_a_worker_that_ends_in_its_collection_is_not_waited_for(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gw1 ends (pytest.exit, status 0) before it collects: gw0 runs every board."""
    pytester.makepyfile(test_where=WHERE_SUITE)
    pytester.makeconftest(
        "import os, pytest\n"
        "def pytest_collection(session):\n"
        "    if os.environ.get('PYTEST_XDIST_WORKER') == 'gw1':\n"
        "        pytest.exit('no hardware here', returncode=0)\n"
    )
    monkeypatch.setenv("WHERE_LOG", str(tmp_path / "where.log"))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--farm", str(five_boards(tmp_path)), "-n", "2", timeout=120
    )
    result.assert_outcomes(passed=15)


@pytest.mark.parametrize("who", ["gw1", "every worker"])
def test_a_worker_ended_by_pytest_exit_after_its_collection_is_no_crash(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    """pytest.exit() in pytest_collection_modifyitems: pytest still sends the worker's collection,
    so it is given boards, then ends normally without running them. They go to the other
    worker; with none left the run ends, its tests never run (INTERNALERROR: xdist asserts
    that a worker that finished crashed on no test), with pytest.exit()'s status: it exited 1,
    "collected test(s) never ran", the controller not knowing why."""
    pytester.makepyfile(test_where=WHERE_SUITE)
    pytester.makeconftest(
        "import os, pytest\n"
        "def pytest_collection_modifyitems(items):\n"
        f"    if {who!r} == 'every worker' or os.environ.get('PYTEST_XDIST_WORKER') == {who!r}:\n"
        "        pytest.exit('no hardware here', returncode=0)\n"
    )
    monkeypatch.setenv("WHERE_LOG", str(tmp_path / "where.log"))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--farm", str(five_boards(tmp_path)), "-n", "2", timeout=120
    )
    assert "INTERNALERROR" not in result.stdout.str(), result.stdout.str()[-3000:]
    if who == "gw1":
        result.assert_outcomes(passed=15)
    else:  # it stopped the run, as without xdist: not a failure of tests that never ran
        assert "never ran: the run fails" not in result.stdout.str()
        assert result.ret == pytest.ExitCode.OK


def test_tests_that_never_ran_after_a_worker_crash_fail_the_run(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gw1 crashes in its collection, once gw0 has sent its own, and xdist may not replace it:
    gw0 runs one board and the run ends. The other boards' tests are errors in the table; the
    run must not exit 0. (Had gw1 crashed first, xdist would drop gw0's collection: no tests ran.)"""
    pytester.makepyfile(test_where=WHERE_SUITE)
    pytester.makeconftest(  # gw1 crashes once the controller has gw0's collection: xdist,
        # stopping at the crash, would ignore a collection that came after it (no test run)
        "import os, time\n"
        "MARK = os.environ['WHERE_LOG'] + '.collected'\n"
        "def pytest_xdist_node_collection_finished(node, ids):\n"
        "    open(MARK, 'w').close()\n"
        "def pytest_collection(session):\n"
        "    if os.environ.get('PYTEST_XDIST_WORKER') == 'gw1':\n"
        "        deadline = time.monotonic() + 60\n"
        "        while not os.path.exists(MARK) and time.monotonic() < deadline:\n"
        "            time.sleep(0.05)\n"
        "        os._exit(3)\n"
    )
    monkeypatch.setenv("WHERE_LOG", str(tmp_path / "where.log"))
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--farm",
        str(five_boards(tmp_path)),
        "-n",
        "2",
        "--max-worker-restart",
        "0",
        timeout=120,
    )
    out = result.stdout.str()
    assert "worker gw1 crashed and worker restarting disabled" in out
    assert re.search(r"boardfarm: 12 collected test\(s\) never ran", out), out[-2000:]
    assert result.ret == pytest.ExitCode.TESTS_FAILED


GB = 1024**3


@pytest.mark.parametrize(
    ("boards", "env", "cores", "memory", "workers"),
    [
        (16, None, 2, 8 * GB, 16),  # a worker per board
        (40, None, 2, 8 * GB, 16),  # 8 per core
        (3, None, 2, 8 * GB, 3),
        (16, None, 4, GB // 2, 5),  # a small host: one per 100 MB available
        (16, None, 4, None, 16),  # memory unknown: cores alone
        (16, None, 4, 0, 1),
        (16, "6", 2, 8 * GB, 6),  # xdist's own override
        (16, "6", 2, GB // 4, 6),  # ...whatever the memory
        (16, "0", 1, 8 * GB, 8),
        (40, "many", 4, 8 * GB, 32),
        (0, None, 2, 8 * GB, 1),
    ],
)
def test_auto_workers(
    boards: int, env: str | None, cores: int, memory: int | None, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv(plugin.AUTO_WORKERS_ENV, raising=False)
    else:
        monkeypatch.setenv(plugin.AUTO_WORKERS_ENV, env)
    monkeypatch.setattr(plugin, "_usable_cores", lambda: cores)
    monkeypatch.setattr(plugin, "_available_memory", lambda: memory)
    assert plugin.auto_workers(boards) == workers


def test_available_memory_is_read_on_linux() -> None:
    memory = plugin._available_memory()
    assert memory is not None and memory > 100 * 1024 * 1024


def test_command_line_narrows_the_farm(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "--farm", str(farm), "--board", "sim-2", "-k", "eval or fast_only")
    assert outcomes(result) == {
        "test_suite.py::test_eval[sim-2]": "PASSED",
        "test_suite.py::test_fast_only[no-board]": "SKIPPED",
    }
    assert "after the command line's name='sim-2'" in result.stdout.str()
    tagged = run(pytester, "--farm", str(farm), "--board-tag", "fast", "-k", "eval")
    assert outcomes(tagged) == {"test_suite.py::test_eval[sim-1]": "PASSED"}


def test_board_knows_its_farm_entry(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path}}}\n"
        "defaults: {properties: {lab: berlin}}\n"
        "boards:\n  - {name: sim-1, emulator: microbit, tags: [fast, display], properties: {desk: 3}}\n"
    )
    pytester.makepyfile(
        test_entry="""
from pytest_boardfarm import FarmBoard

def test_entry(board):
    assert isinstance(board, FarmBoard)
    assert board.name == "sim-1" and board.platform == "microbit"
    assert board.tags == ("fast", "display")
    assert board.properties == {"lab": "berlin", "desk": "3"}
    assert board.spec.emulator == "microbit"
"""
    )
    run(pytester, "--farm", "farm.yaml").assert_outcomes(passed=1)


def test_unknown_board_on_the_command_line(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "--farm", str(farm), "--board", "sim-9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no board named 'sim-9'" in result.stderr.str() and "the farm has: sim-1, sim-2" in result.stderr.str()


def test_broken_farm_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "farm.yaml").write_text("boards:\n  - name: x\n    prot: /dev/ttyACM0\n")
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "--farm", "farm.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "farm.yaml:3: boards[0].prot: unknown key (did you mean 'port'?)" in err
    assert "farm.yaml:2: boards[0] (x).port: missing" in err


def test_farm_from_environment_and_ini(pytester: pytest.Pytester, farm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_one="def test_one(board):\n    assert board.eval('3') == 3\n")
    monkeypatch.setenv("BOARDFARM_INVENTORY", str(farm))
    run(pytester, "--board", "sim-1").assert_outcomes(passed=1)
    monkeypatch.delenv("BOARDFARM_INVENTORY")
    pytester.makeini("[pytest]\nboardfarm_inventory = farm.yaml\n")
    run(pytester, "--board", "sim-2").assert_outcomes(passed=1)


def test_board_fixture_without_a_farm(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one(board):\n    pass\n")
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=1)  # more in tests/test_manners.py
    assert "no farm configured" in result.stdout.str()


def test_deploy_before_the_first_test(pytester: pytest.Pytester, tmp_path: Path) -> None:
    app = pytester.path / "app"
    app.mkdir()
    (app / "greet.py").write_text("def hello():\n    return 'hello from the app'\n")
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path}}}\nboards:\n  - {{name: sim-1, emulator: microbit, deploy: app}}\n"
    )
    pytester.makepyfile(
        test_app="""
def test_app(board):
    assert board.eval("__import__('greet').hello()") == 'hello from the app'
"""
    )
    run(pytester, "--farm", "farm.yaml").assert_outcomes(passed=1)


def test_silent_board_errors_its_tests_and_the_rest_runs(pytester: pytest.Pytester, tmp_path: Path) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    port = silent.getsockname()[1]
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path}}}\nboards:\n"
        f"  - {{name: silent, port: 'socket://127.0.0.1:{port}', timeout: 1}}\n"
        "  - {name: good, emulator: microbit}\n"
        f"  - {{name: gone, port: 'socket://127.0.0.1:{port + 1 if port < 65535 else 1}'}}\n"
    )
    pytester.makepyfile(test_a="def test_a(board):\n    pass\n\ndef test_b(board):\n    pass\n")
    try:
        result = run(pytester, "--farm", "farm.yaml")
    finally:
        silent.close()
    got = outcomes(result)
    assert got["test_a.py::test_a[good]"] == "PASSED" and got["test_a.py::test_b[good]"] == "PASSED"
    for name in ("silent", "gone"):
        assert got[f"test_a.py::test_a[{name}]"] == "ERROR" and got[f"test_a.py::test_b[{name}]"] == "ERROR"
    text = result.stdout.str()
    assert "board silent quarantined" in text and "could not enter the raw REPL" in text  # after the ladder
    assert "board gone unavailable" in text and "cannot open" in text
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def shared_boards() -> Iterator[list[MicrobitEmulator]]:
    """Two emulated boards outside any pytest run: a farm that runs share."""
    boards = start_many(2)
    yield boards
    for board in boards:
        board.stop()


def port_farm(path: Path, boards: list[MicrobitEmulator], locks: Path, lock_timeout: str = "") -> None:
    lines = [f"locks: {{dir: {locks}}}", "boards:"]
    lines += [f"  - {{name: shared-{i + 1}, port: '{b.url}'}}" for i, b in enumerate(boards)]
    path.write_text("\n".join(lines) + "\n")


RECORDING_SUITE = """
import os, time, pytest
@pytest.mark.parametrize("i", range(3))
def test_busy(board, i):
    start = time.time()
    board.exec("import microbit\\nmicrobit.sleep(150)")
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{board.name} {os.environ['RUN']} {start} {time.time()}\\n")
"""


def test_concurrent_runs_never_share_a_board(
    pytester: pytest.Pytester, shared_boards: list[MicrobitEmulator], tmp_path: Path
) -> None:
    port_farm(pytester.path / "farm.yaml", shared_boards, tmp_path / "locks")
    pytester.makepyfile(test_busy=RECORDING_SUITE)
    record = tmp_path / "record.txt"
    procs = []
    for run_name, extra in (("A", ["-n", "2"]), ("B", [])):
        env = dict(os.environ, RECORD=str(record), RUN=run_name)
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--farm", "farm.yaml", *extra]
        procs.append(subprocess.Popen(cmd, cwd=pytester.path, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for line in record.read_text().splitlines():
        name, run_name, start, end = line.split()
        spans.setdefault(name, []).append((float(start), float(end), run_name))
    assert sorted(spans) == ["shared-1", "shared-2"]
    for name, uses in spans.items():
        assert len(uses) == 6 and {u[2] for u in uses} == {"A", "B"}
        uses.sort()
        for (_, end, run_a), (start, _, run_b) in zip(uses, uses[1:], strict=False):
            assert end <= start, f"{name} used by runs {run_a} and {run_b} at once"


def test_locked_board_fails_its_tests_naming_the_holder(
    pytester: pytest.Pytester, shared_boards: list[MicrobitEmulator], tmp_path: Path
) -> None:
    port_farm(pytester.path / "farm.yaml", shared_boards, tmp_path / "locks")
    holder = BoardLock(tmp_path / "locks", shared_boards[0].url, run="another CI job")
    holder.acquire(1)
    pytester.makepyfile(test_one="def test_one(board):\n    pass\n")
    try:
        result = run(pytester, "--farm", "farm.yaml", "--farm-lock-timeout", "0.5")
    finally:
        holder.release()
    got = outcomes(result)
    assert got == {"test_one.py::test_one[shared-1]": "ERROR", "test_one.py::test_one[shared-2]": "PASSED"}
    text = result.stdout.str()
    assert f"pid {os.getpid()}" in text and "another CI job" in text and "gave up after 0.5s" in text


def qemu_pids_on(port: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"qemu-system-arm" in cmdline and f"127.0.0.1:{port},".encode() in cmdline:
                pids.append(int(entry))
    return pids


@pytest.mark.parametrize(
    "workers, hang",
    [([], ("real",)), ([], ("sim",)), (["-n", "2"], ("real", "sim"))],
    ids=["sequential-real", "sequential-sim", "xdist"],  # one process holds one board at a time
)
def test_killed_run_leaves_no_lock_and_no_emulator(
    pytester: pytest.Pytester,
    shared_boards: list[MicrobitEmulator],
    tmp_path: Path,
    workers: list[str],
    hang: tuple[str, ...],
) -> None:
    locks = tmp_path / "locks"
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {locks}}}\nboards:\n  - {{name: real, port: '{shared_boards[0].url}'}}\n"
        "  - {name: sim, emulator: microbit}\n"
    )
    started = tmp_path / "started"
    pytester.makepyfile(
        test_hang=f"""
import time
def test_hang(board):
    with open({str(started)!r}, "a") as f:
        f.write(board.name + " " + board._transport.url + "\\n")
    if board.name in {hang!r}:  # holding the board: its lock, or its emulator
        time.sleep(60)
"""
    )
    expected = {"real", "sim"} if "sim" in hang else {"real"}  # 'real' runs first
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--farm", "farm.yaml", *workers],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(started.read_text().splitlines() if started.exists() else []) < 2:
            if expected == {"real"} and started.exists():
                break  # only 'real' starts: it hangs, holding its lock
            time.sleep(0.1)
        lines = dict(line.split() for line in started.read_text().splitlines())
        assert set(lines) == expected
        emulator_port = lines["sim"].rsplit(":", 1)[1] if "sim" in hang else ""
        assert not emulator_port or qemu_pids_on(emulator_port)
        if "real" in hang:
            assert not BoardLock(locks, shared_boards[0].url).is_free()
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its xdist workers, as a CI runner would
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    for _ in range(100):
        if not emulator_port or not qemu_pids_on(emulator_port):
            break
        time.sleep(0.05)
    assert not emulator_port or not qemu_pids_on(emulator_port), "the run's emulator outlived it"
    lock = BoardLock(locks, shared_boards[0].url)
    lock.acquire(0.5)  # the next run gets the board at once
    lock.release()
    assert list(locks.iterdir()) == []


# -- bad options, markers and farm paths are refused before anything runs (issue 9) ----------


@pytest.mark.parametrize(
    ("option", "value", "rule"),
    [
        ("--farm-timeout", "nan", "more than 0 and at most 86400"),
        ("--farm-timeout", "inf", "more than 0 and at most 86400"),
        ("--farm-timeout", "-1", "more than 0 and at most 86400"),
        ("--farm-timeout", "0", "more than 0 and at most 86400"),
        ("--farm-timeout", "1e308", "more than 0 and at most 86400"),
        ("--farm-lock-timeout", "nan", "0 or more and at most 86400"),
        ("--farm-lock-timeout", "-1", "0 or more and at most 86400"),
        ("--farm-lock-timeout", "inf", "0 or more and at most 86400"),
        ("--farm-test-timeout", "nan", "0 or more and at most 86400"),
        ("--farm-test-timeout", "inf", "0 or more and at most 86400"),
        ("--farm-test-timeout", "-5", "0 or more and at most 86400"),
    ],
)
def test_bad_seconds_are_a_usage_error(pytester: pytest.Pytester, option: str, value: str, rule: str) -> None:
    result = run(pytester, option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"argument {option}: expected a number of seconds, {rule}, got '{value}'" in result.stderr.str()


def test_good_seconds_are_taken(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_one="def test_one(board):\n    board.exec('import time\\ntime.sleep(3)')\n")
    result = run(pytester, "--farm", str(farm), "--board", "sim-1", "--farm-lock-timeout", "0", "--farm-timeout", "0.5")
    assert "BoardTimeout" in result.stdout.str()
    result.assert_outcomes(failed=1)


BAD_MARKERS = {
    "test_typo": (
        'platfrom="esp32"',
        "unknown argument 'platfrom' (did you mean 'platform'?); known: name, platform, tags, timeout",
    ),
    "test_positional": ('"esp32"', "positional argument 'esp32' not allowed; use name=, platform=, tags="),
    "test_nan": ('timeout=float("nan")', "timeout=nan: expected a number of seconds, more than 0 and at most 86400"),
    "test_negative": ("timeout=-1", "timeout=-1: expected a number of seconds, more than 0"),
    "test_tags": ("tags=5", "tags=5: expected a string or a list of strings"),
    "test_host_limit": ("test_timeout=-1", "test_timeout=-1: expected a number of seconds, 0 or more"),
    "test_host_limit_text": ('test_timeout="30"', "test_timeout='30': expected a number of seconds, 0 or more"),
}


def test_the_documented_marker_arguments_are_taken(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(
        test_marked="import pytest\n"
        "@pytest.mark.board(name='sim-1', platform='microbit', tags=[], timeout=5, test_timeout=30)\n"
        "def test_limited(board):\n    pass\n"
        "@pytest.mark.board(name='sim-1', test_timeout=0)\n"
        "def test_unlimited(board):\n    pass\n"
    )
    run(pytester, "--farm", str(farm)).assert_outcomes(passed=2)


def test_a_bad_ini_host_limit_is_a_usage_error(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makeini("[pytest]\nboardfarm_test_timeout = soon\n")
    pytester.makepyfile(test_one="def test_one(board):\n    pass\n")
    result = run(pytester, "--farm", str(farm))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini option boardfarm_test_timeout: expected a number of seconds, 0 or more" in result.stderr.str()


def test_a_bad_marker_is_a_collection_error_not_a_run_everywhere(pytester: pytest.Pytester, farm: Path) -> None:
    for name, (args, _) in BAD_MARKERS.items():
        pytester.makepyfile(**{name: f"import pytest\n@pytest.mark.board({args})\ndef test_it(board):\n    pass\n"})
    pytester.makepyfile(test_fine="def test_fine(board):\n    pass\n")
    result = run(pytester, "--farm", str(farm))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    text = result.stdout.str()
    for name, (_, problem) in BAD_MARKERS.items():
        assert f"{name}.py::test_it: @pytest.mark.board: {problem}" in text
    assert "PASSED" not in text and "Traceback" not in text
    assert f"Interrupted: {len(BAD_MARKERS)} errors during collection" in text


@pytest.mark.parametrize("kind", ["fifo", "/dev/null"])
def test_farm_path_must_be_a_regular_file(pytester: pytest.Pytester, kind: str) -> None:
    """In a child with a deadline: before the fix, a FIFO blocked the run forever."""
    path = pytester.path / "farm.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path(kind)
    pytester.makepyfile(test_one="def test_one(board):\n    pass\n")
    label = {"fifo": "a FIFO", "/dev/null": "a character device"}[kind]
    for args, env in (["--farm", str(path)], {}), ([], {"BOARDFARM_INVENTORY": str(path)}):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=pytester.path,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
        assert f"{path}: not a regular file ({label}); give the path of a farm.yaml" in done.stderr


def test_an_unusable_board_shows_its_reason_not_the_plugins_frames(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n  - {{name: gone, port: 'socket://127.0.0.1:1'}}\n"
    )
    pytester.makepyfile(test_one="def test_one(board):\n    pass\n")
    result = run(pytester, "--farm", "farm.yaml")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "BoardUnavailable: board gone unavailable: cannot open socket://127.0.0.1:1" in out
    assert "pytest_boardfarm/" not in out.split("short test summary info")[0]  # no plugin source in the report


RESET_SUITES = {
    "test_a": "def test_a1(board):\n    print('A1', board.eval(\"'leftover' in globals()\"))\n    board.exec('from_a = 1')\n\n"
    "def test_a2(board):\n    print('A2', board.eval(\"'from_a' in globals()\"))\n",
    "test_b": "def test_b1(board):\n    print('B1', board.eval(\"'from_a' in globals()\"))\n",
}


@pytest.mark.parametrize(
    ("mode", "kept"),
    [
        ("test", {"A1": "False", "A2": "False", "B1": "False"}),
        ("module", {"A1": "False", "A2": "True", "B1": "False"}),
        ("session", {"A1": "False", "A2": "True", "B1": "True"}),
        ("never", {"A1": "True", "A2": "True", "B1": "True"}),
    ],
)
def test_farm_reset_modes(
    pytester: pytest.Pytester, tmp_path: Path, emulator: MicrobitEmulator, mode: str, kept: dict[str, str]
) -> None:
    """README: --farm-reset test (before every test), module (before each module's first test),
    session (before a board's first test), never; what a run before left in RAM is never kept but by never."""
    if not emulator.running():
        emulator.start()
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n  - {{name: sim-1, port: '{emulator.url}'}}\n"
    )
    pytester.makepyfile(**RESET_SUITES)
    with connect(emulator.url, timeout=10) as board:
        board.soft_reset()
        board.exec("leftover = 1")  # an earlier run's or command's state
    result = run(pytester, "--farm", "farm.yaml", "--farm-reset", mode, "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert dict(re.findall(r"\b(A1|A2|B1) (True|False)\b", result.stdout.str())) == kept


def test_a_run_names_itself_unless_boardfarm_run_id_names_it(
    pytester: pytest.Pytester, farm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name boardfarm list and a waiting run show for the lock's holder (README: "run nightly-17")."""
    pytester.makepyfile(
        test_name="import os\n\ndef test_name(board):\n    print('NAME', os.environ['BOARDFARM_RUN_ID'])\n"
    )
    monkeypatch.delenv("BOARDFARM_RUN_ID", raising=False)
    out = run(pytester, "--farm", str(farm), "--board", "sim-1", "-s").stdout.str()
    assert re.search(r"NAME run [0-9a-f]{8}\b", out), out
    monkeypatch.setenv("BOARDFARM_RUN_ID", "run nightly-17")
    assert "NAME run nightly-17" in run(pytester, "--farm", str(farm), "--board", "sim-1", "-s").stdout.str()
