"""Board locks: exclusive across processes, released by the kernel on death."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import pytest

from pytest_boardfarm import errors, locks
from pytest_boardfarm.locks import BoardLock, LockTimeout


def holder_process(lock_dir: Path, key: str) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import sys, time
        from pytest_boardfarm.locks import BoardLock
        lock = BoardLock({str(lock_dir)!r}, {key!r}, run="other-run")
        lock.acquire(5)
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    proc = holder_process(tmp_path, "/dev/ttyACM0")
    try:
        lock = BoardLock(tmp_path, "/dev/ttyACM0")
        start = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            lock.acquire(0.3)
        assert time.monotonic() - start < 2
        message = str(info.value)
        assert f"pid {proc.pid}" in message and "host " in message and "user " in message
        assert "since " in message and "other-run" in message
    finally:
        proc.kill()
        proc.wait()


def test_killed_holder_leaves_the_board_free(tmp_path: Path) -> None:
    proc = holder_process(tmp_path, "socket://127.0.0.1:4000")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock = BoardLock(tmp_path, "socket://127.0.0.1:4000")
    lock.acquire(2)
    assert lock.held
    lock.release()
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_waiter_gets_the_lock_when_released(tmp_path: Path) -> None:
    first = BoardLock(tmp_path, "k")
    first.acquire(1)
    code = f"from pytest_boardfarm.locks import BoardLock; BoardLock({str(tmp_path)!r}, 'k').acquire(10); print('got')"
    waiter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting
    first.release()
    out, _ = waiter.communicate(timeout=10)
    assert out.strip() == "got"


def test_lock_names_are_safe_file_names(tmp_path: Path) -> None:
    lock = BoardLock(tmp_path, "rfc2217://lab-pi:4000/../../etc")
    assert lock.path.parent == tmp_path and "/" not in lock.path.name


# -- a lock directory shared by several users ------------------------------------


def test_new_lock_directory_and_files_are_shared_by_all_users(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        lock = BoardLock(tmp_path / "made" / "locks", "k")
        lock.acquire(1)
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(os.stat(tmp_path / "made" / "locks").st_mode) == 0o1777
        assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o666
    finally:
        lock.release()


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    project = tmp_path / "project"  # `locks: {dir: .}`: the user's own folder
    project.mkdir(mode=0o755)
    os.chmod(project, 0o755)
    lock = BoardLock(project, "k")
    lock.acquire(1)
    lock.release()
    assert stat.S_IMODE(os.stat(project).st_mode) == 0o755


@pytest.mark.parametrize(
    "record, reason",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"host": "h", "pid": 1, "user": "u", "since": "yesterday"}', "since: 'yesterday'"),
        (b'{"host": "h", "pid": 1, "user": "u", "since": 1e300}', "since: 1e+300"),
        (b'{"host": "h", "pid": 1, "user": "u", "since": 1' + b"0" * 400 + b"}", "since: 1000"),
        (b'{"host": "h", "pid": "1", "user": "u", "since": 1}', "pid: '1'"),
        (b'{"host": ["h"], "pid": 1, "user": "u", "since": 1}', "host: ['h']"),
        (b'{"pid": 1}', "host: None"),
        (b'{"host": "h", "pid": 1, "user": "u", "since": 1, "run": 5}', "run: 5"),
        (b"[" * 100000, "not JSON"),
    ],
    ids=["text", "list", "since-text", "since-huge", "since-bigint", "pid-text", "host-list", "missing", "run", "deep"],
)
def test_malformed_holder_record_still_says_locked(tmp_path: Path, record: bytes, reason: str) -> None:
    holder = BoardLock(tmp_path, "k")
    holder.acquire(1)
    try:
        holder.path.write_bytes(record)  # a foreign or damaged record in a lock that is held
        with pytest.raises(LockTimeout) as info:
            BoardLock(tmp_path, "k").acquire(0)
    finally:
        holder.release()
    message = str(info.value)
    assert "board 'k' is locked by an unknown holder (unreadable record: " in message
    assert reason in message and "gave up after 0s" in message


def test_empty_holder_record_says_locked(tmp_path: Path) -> None:
    holder = BoardLock(tmp_path, "k")
    holder.acquire(1)
    try:
        holder.path.write_bytes(b"")  # a holder between its flock and its record
        with pytest.raises(LockTimeout, match=r"locked by an unknown holder \(no record yet\)"):
            BoardLock(tmp_path, "k").acquire(0)
    finally:
        holder.release()


# -- two Unix users: root (CI) and nobody ----------------------------------------

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

HOLD = """
import sys, time
from boardfarm_locks.locks import BoardLock
lock = BoardLock(sys.argv[1], sys.argv[2], run="run of " + sys.argv[3])
print("waiting", flush=True)
lock.acquire(float(sys.argv[4]))
print("locked", flush=True)
time.sleep(float(sys.argv[5]))
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def two_users() -> Iterator[tuple[Path, str]]:
    """A world-readable copy of locks.py (nobody cannot read /root) and a python nobody can run."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run a second process as user nobody")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run a process as user nobody")
    base = Path(tempfile.mkdtemp(prefix="boardfarm-users-"))
    try:
        os.chmod(base, 0o777)  # nobody may create the lock directory in it
        package = base / "boardfarm_locks"  # locks.py and what it imports, nothing else
        package.mkdir(mode=0o755)
        (package / "__init__.py").write_text("")
        for module in (locks, errors):
            shutil.copy(str(module.__file__), package)
        for path in package.iterdir():
            os.chmod(path, 0o644)
        os.chmod(package, 0o755)
        tried = []
        for python in (sys.executable, "/usr/bin/python3"):
            ok = subprocess.run(
                [*NOBODY, python, "-c", "import boardfarm_locks.locks"], cwd=base, env=_env(base), capture_output=True
            )
            if ok.returncode == 0:
                yield base, python
                return
            tried.append(ok.stderr.decode(errors="replace"))
        if any("boardfarm_locks" in err for err in tried):  # our code failed, not the interpreter: never a skip
            pytest.fail("user nobody could not import the lock module:\n" + "\n".join(tried))
        pytest.skip("no python that user nobody can run: " + " | ".join(err.strip()[-200:] for err in tried))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _env(base: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**keep, "PYTHONPATH": str(base), "LOGNAME": "root", "USER": "root"}  # setpriv keeps the caller's


def _holder(base: Path, python: str, user: list[str], key: str, wait: float = 20, hold: float = 60) -> Popen[str]:
    name = "nobody" if user else "root"
    proc = subprocess.Popen(
        [*user, python, "-c", HOLD, str(base / "locks"), key, name, str(wait), str(hold)],
        cwd=base,
        env=_env(base),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
    return proc


def _finish(proc: Popen[str]) -> tuple[str, str]:
    """The rest of what the holder printed, read through the buffer ``readline`` used
    (``communicate`` reads the pipe itself and would miss lines already buffered)."""
    proc.wait(timeout=30)
    assert proc.stdout is not None and proc.stderr is not None
    return proc.stdout.read(), proc.stderr.read()


def _kill(proc: Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def test_root_waits_for_nobodys_lock_and_takes_it_when_nobody_is_killed(two_users: tuple[Path, str]) -> None:
    base, python = two_users
    proc = _holder(base, python, NOBODY, "board-1")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert stat.S_IMODE(os.stat(base / "locks").st_mode) == 0o1777  # nobody made it: shared
        lock = BoardLock(base / "locks", "board-1")
        with pytest.raises(LockTimeout) as info:
            lock.acquire(0.3)
        assert "user nobody" in str(info.value) and f"pid {proc.pid}" in str(info.value)
        assert "run of nobody" in str(info.value)
        got = threading.Event()
        waiter = threading.Thread(target=lambda: (lock.acquire(20), got.set()))
        waiter.start()
        time.sleep(0.3)
        assert not got.is_set()  # root waits
        os.kill(proc.pid, signal.SIGKILL)  # the kernel drops nobody's flock
        waiter.join(timeout=20)
        assert got.is_set() and lock.held
        assert lock.holder() is not None and lock.holder().user == "root"  # type: ignore[union-attr]
        lock.release()
    finally:
        _kill(proc)
    again = _holder(base, python, NOBODY, "board-1", hold=0)  # and nobody can have it back
    out, err = _finish(again)
    assert out.split() == ["locked", "released"], err


def test_nobody_waits_for_roots_lock_and_takes_it_when_root_is_killed(two_users: tuple[Path, str]) -> None:
    base, python = two_users
    root = _holder(base, python, [], "board-2")
    nobody = None
    try:
        assert root.stdout is not None and root.stdout.readline().strip() == "locked"
        lock_file = BoardLock(base / "locks", "board-2").path
        assert os.stat(lock_file).st_uid == 0
        nobody = _holder(base, python, NOBODY, "board-2", hold=0.5)  # opens root's file and waits on it
        time.sleep(0.5)
        assert nobody.poll() is None, nobody.communicate()  # waiting, not refused
        os.kill(root.pid, signal.SIGKILL)  # root's file stays behind, still root's
        assert nobody.stdout is not None and nobody.stdout.readline().strip() == "locked"
        holder = BoardLock(base / "locks", "board-2").holder()
        assert holder is not None and holder.user == "nobody" and holder.pid == nobody.pid
        out, err = _finish(nobody)
        assert out.split() == ["released"], err
        # nobody may not remove root's file from the sticky directory: it stays, with no stale record
        assert os.stat(lock_file).st_uid == 0 and lock_file.read_bytes() == b""
        lock = BoardLock(base / "locks", "board-2")  # and root can have it back
        lock.acquire(2)
        lock.release()
    finally:
        _kill(root)
        if nobody is not None:
            _kill(nobody)


def test_is_free_is_a_glance_that_takes_nothing(tmp_path: Path) -> None:
    lock = BoardLock(tmp_path, "k")
    assert lock.is_free()  # no file yet
    lock.acquire(1)
    assert not BoardLock(tmp_path, "k").is_free()
    lock.release()
    assert BoardLock(tmp_path, "k").is_free()


def test_a_directory_other_users_cannot_write_is_explained(two_users: tuple[Path, str]) -> None:
    base, python = two_users
    private = base / "locks"
    private.mkdir(mode=0o755)  # the user's own directory: left as it is
    os.chmod(private, 0o755)
    proc = _holder(base, python, NOBODY, "board-4", wait=1, hold=0)
    _, err = _finish(proc)
    assert proc.returncode != 0 and "Permission denied: cannot lock " in err
    assert "must be writable by all of them" in err
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o755
