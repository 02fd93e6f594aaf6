"""The board API against the real micro:bit firmware under QEMU."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from pytest_boardfarm import (
    Board,
    BoardError,
    BoardTimeout,
    ConnectionLost,
    DeviceError,
    UnsupportedOperation,
    connect,
)
from pytest_boardfarm.emulator import MicrobitEmulator
from pytest_boardfarm.errors import ProtocolError
from pytest_boardfarm.files import parse_value


def test_exec_returns_stdout(mb: Board) -> None:
    assert mb.exec("print(6 * 7)") == "42\n"
    assert mb.exec("x = 1") == ""


def test_eval_parses_values(mb: Board) -> None:
    assert mb.eval("1 + 1") == 2
    assert mb.eval("[1, 'two', b'\\x00\\xff', None, (True, 2.5)]") == [1, "two", b"\x00\xff", None, (True, 2.5)]
    assert mb.eval("{'a': [1, 2]}") == {"a": [1, 2]}
    assert mb.eval("'caf\\u00e9'") == "café"


def test_eval_of_unparsable_value_is_a_clear_error(mb: Board) -> None:
    with pytest.raises(BoardError, match="cannot parse"):
        mb.eval("print")


@pytest.mark.parametrize("answer", ["-" * 100_000 + "1", "-" * 5000 + "1", "1+" * 100_000 + "1", "~" * 5000 + "1"])
def test_an_answer_too_deep_for_the_parser_is_a_protocol_error(answer: str) -> None:
    with pytest.raises(ProtocolError, match=r"the board's answer to X\(\) is too deeply nested or too large to parse"):
        parse_value(answer, "X()")


def test_eval_of_a_huge_expression_is_a_protocol_error_and_the_board_goes_on(mb: Board) -> None:
    # The board prints what eval must parse (no big string on its ~9 KB heap): repr() writes it.
    mb.exec(
        "class X:\n    def __init__(self, op):\n        self.op = op\n    def __repr__(self):\n"
        "        for _ in range(200):\n            print(self.op * 50, end='')\n        return '1'\n"
    )
    for op in ("-", "1+"):
        with pytest.raises(ProtocolError, match=r"answer to X\('.+'\) is too deeply nested or too large"):
            mb.eval(f"X({op!r})")
    assert mb.eval("1 + 1") == 2


def test_device_traceback_is_kept_as_printed(mb: Board) -> None:
    with pytest.raises(DeviceError) as info:
        mb.exec("print('before')\n1/0")
    err = info.value
    assert err.exc_name == "ZeroDivisionError"
    assert err.traceback.startswith("Traceback (most recent call last):\n")
    assert 'File "<stdin>", line 2' in err.traceback
    assert err.stdout == "before\n"
    assert mb.exec("print('still fine')") == "still fine\n"


def test_memory_error(mb: Board) -> None:
    with pytest.raises(DeviceError) as info:
        mb.exec("b = bytearray(20000)")
    assert info.value.exc_name == "MemoryError"
    assert mb.eval("2 + 2") == 4


def test_runaway_loop_is_interrupted_and_board_reused(mb: Board) -> None:
    start = time.monotonic()
    with pytest.raises(BoardTimeout, match="interrupted"):
        mb.exec("while True:\n    pass", timeout=0.5)
    assert time.monotonic() - start < 5
    assert mb.exec("print('alive')") == "alive\n"


def test_runaway_printing_loop(mb: Board) -> None:
    with pytest.raises(BoardTimeout):
        mb.exec("i = 0\nwhile True:\n    print('spam', i)\n    i += 1", timeout=0.5)
    assert mb.eval("'ok'") == "ok"
    assert "spam" in mb.transcript.text()


def test_soft_reset_clears_state(mb: Board) -> None:
    mb.exec("marker = 123")
    assert mb.eval("marker") == 123
    out = mb.soft_reset()
    assert "soft reboot" in out
    with pytest.raises(DeviceError, match="NameError"):
        mb.exec("marker")


def test_info(mb: Board) -> None:
    info = mb.info
    assert info.platform == "microbit"
    assert "MicroPython v1.9.2" in info.firmware
    assert len(info.unique_id) == 16 and int(info.unique_id, 16) >= 0
    assert 2000 < info.mem_free < 20000


def test_plain_raw_mode_is_remembered(mb: Board) -> None:
    mb.exec("pass")
    assert mb.raw_paste is False  # 1.9.2 has no raw-paste: it answered with the banner
    assert mb.exec("print('x')") == "x\n"


def test_transcript_records_and_streams(mb: Board) -> None:
    seen: list[bytes] = []
    stop = mb.transcript.subscribe(seen.append)
    mark = mb.transcript.mark()
    mb.exec("print('hello transcript')")
    stop()
    mb.exec("print('after')")
    assert "hello transcript" in mb.transcript.text(mark)
    assert b"hello transcript" in b"".join(seen)
    assert b"after" not in b"".join(seen)


def test_run_local_script(mb: Board, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("for i in range(3):\n    print(i)\n")
    assert mb.run(script) == "0\n1\n2\n"
    assert mb.ls() == []  # run from RAM, nothing written


def test_output_with_the_raw_repls_end_byte_is_output_not_an_error(mb: Board) -> None:
    """The raw REPL ends a program's output with 0x04: a program that prints that byte itself
    (binary data on the UART) was reported as raising its output after it."""
    binary = "from microbit import uart\nuart.write(b'a\\x04b\\x04c>d')\n"
    assert mb.exec(binary + "print('END')") == "a\x04b\x04c>dEND\n"
    with pytest.raises(DeviceError) as caught:
        mb.exec(binary + "raise ValueError('after')")
    assert caught.value.stdout == "a\x04b\x04c>d" and caught.value.exc_name == "ValueError"
    mb.start(binary + "print('END')")
    mb.expect_exact("END", timeout=10)
    assert mb.stop() == "a\x04b\x04c>dEND\n"
    assert mb.eval("1 + 1") == 2


def test_a_source_holding_the_raw_repls_control_bytes_runs_as_written(mb: Board) -> None:
    """Ctrl-A to Ctrl-D in a source (in a string, say) restarted, left or interrupted the raw
    REPL, or ended the source early: such a source now travels escaped and runs as written."""
    short = "print([ord(c) for c in '\x01\x02\x03\x04'])"  # within one plain raw window
    assert mb.exec(short) == "[1, 2, 3, 4]\n"
    mb.start(short)
    mb.expect_exact("]", timeout=10)
    assert mb.stop() == "[1, 2, 3, 4]\n"
    assert mb.eval("1 + 1") == 2


@pytest.mark.parametrize("message", ["a\\x04b", "a\\x04>b"])  # 0x04 0x04 '>' in it would read as the end
def test_an_exception_whose_message_holds_the_end_byte_is_the_whole_traceback(mb: Board, message: str) -> None:
    """The error output is framed by 0x04 too: a message holding one (and even the prompt
    after it) cut the traceback short, and its rest was read as the next program's reply."""
    binary = "from microbit import uart\nuart.write(b'x\\x04y')\n"
    for prefix, stdout in (("", ""), (binary, "x\x04y")):
        with pytest.raises(DeviceError) as caught:
            mb.exec(f"{prefix}raise ValueError('{message}')")
        assert caught.value.stdout == stdout
        assert caught.value.exc_name == "ValueError"
        assert caught.value.traceback.endswith(f"ValueError: {message.replace(chr(92) + 'x04', chr(4))}\n")
        assert mb.eval("1 + 1") == 2
    mb.start(f"print('out')\nraise ValueError('{message}')")
    mb.expect_exact("ValueError", timeout=10)  # raised: stop's Ctrl-C must not land before it
    with pytest.raises(DeviceError) as caught:
        mb.stop()
    assert caught.value.traceback.endswith(f"ValueError: {message.replace(chr(92) + 'x04', chr(4))}\n")
    assert mb.eval("2 + 2") == 4


@pytest.mark.parametrize("printed", ["x\\n\\x04>y", "\\x04\\n\\x04>y", "\\x04\\r\\n\\x04>\\r\\n"])
def test_output_holding_a_newline_or_0x04_before_the_prompt_is_output(mb: Board, printed: str) -> None:
    """A reply is output, 0x04, nothing or an error, 0x04 '>': output holding a newline before
    0x04 '>' ended a background program's reply (no 0x04 before it), and '\\x04\\n\\x04>' read
    as an error '\\n' in exec (IndexError in stop); the program went on, the next exec failed."""
    expected = printed.encode().decode("unicode_escape").replace("\r\n", "\n") + "END\n"
    binary = f"from microbit import uart\nuart.write(b'{printed}')\n"
    assert mb.exec(binary + "print('END')") == expected
    assert mb.eval("1 + 1") == 2
    mb.start(binary + "print('END')\nwhile True:pass")
    mb.expect_exact("END", timeout=10)
    assert mb.stop() == expected
    assert mb.eval("2 + 2") == 4


def test_output_saying_soft_reboot_after_0x04s_is_output(mb: Board) -> None:
    """A reply 0x04 0x04 then 'soft reboot' is how current firmware reboots at SystemExit:
    output holding that, with no raw REPL banner after it, waited for the banner until the
    deadline (BoardTimeout) instead of being the program's output."""
    binary = "from microbit import uart\nuart.write(b'\\x04\\x04soft reboot\\r\\n')\n"
    assert mb.exec(binary + "print('E')", timeout=5) == "\x04\x04soft reboot\nE\n"
    assert mb.eval("1 + 1") == 2


def test_a_traceback_line_in_output_or_message_is_not_the_traceback(mb: Board) -> None:
    """Output and error split at 0x04 and the traceback's first line: an exception message
    holding that line (after a 0x04) was taken for the start of the error output, the real
    traceback and the message's start given as the program's output."""
    line = "\\x04Traceback (most recent call last):\\n"
    with pytest.raises(DeviceError) as caught:
        mb.exec(f"from microbit import uart\nuart.write(b'{line}')\nraise ValueError('{line}')")
    assert caught.value.stdout == "\x04Traceback (most recent call last):\n"
    assert caught.value.exc_name == "ValueError"
    assert caught.value.traceback.startswith("Traceback (most recent call last):\n  File ")
    assert caught.value.traceback.endswith("ValueError: \x04Traceback (most recent call last):\n\n")
    assert mb.eval("1 + 1") == 2


def test_empty_source_runs_nothing(mb: Board, tmp_path: Path) -> None:
    """Ctrl-D on an empty raw REPL line is a soft reboot, not an empty program: an empty
    script (``boardfarm run`` of an empty file) waited for output that never came."""
    mb.exec("kept = 42")
    empty = tmp_path / "empty.py"
    empty.write_bytes(b"")
    assert mb.exec("", timeout=3) == ""
    assert mb.run(empty, timeout=3) == ""
    mb.start("", timeout=3)
    assert mb.stop(timeout=3) == ""
    assert mb.eval("kept") == 42  # no reboot: RAM kept


# -- files ---------------------------------------------------------------------


def test_binary_file_round_trip(mb: Board) -> None:
    data = bytes(range(256)) * 3
    mb.put(data, "all.bin")
    assert mb.get("all.bin") == data
    assert mb.exists("all.bin")
    assert [(e.name, e.size) for e in mb.ls()] == [("all.bin", 768)]


def test_unicode_and_quoted_names(mb: Board, tmp_path: Path) -> None:
    text = "héllo ✓ \"quoted\" 'single' \\ back\nnew line\x00nul"
    local = tmp_path / "u.txt"
    local.write_text(text, encoding="utf-8")
    name = 'it\'s "x" ✓.txt'
    mb.put(local, name)
    assert mb.get(name).decode("utf-8") == text
    assert mb.exists(name)
    mb.remove(name)
    assert not mb.exists(name)


def test_file_larger_than_free_heap(mb: Board) -> None:
    free = mb.info.mem_free
    data = bytes((i * 7 + 3) % 256 for i in range(12 * 1024))
    assert len(data) > free
    mb.put(data, "big.bin")
    assert mb.get("big.bin") == data


def test_file_larger_than_flash_is_a_clear_error(mb: Board) -> None:
    # The emulated micro:bit's file system holds ~15 KB, so 20 KB cannot fit.
    with pytest.raises(DeviceError, match="no space left") as info:
        mb.put(b"z" * 20 * 1024, "huge.bin")
    assert "partial file was removed" in str(info.value)
    assert not mb.exists("huge.bin")
    mb.put(b"fits", "small.txt")
    assert mb.get("small.txt") == b"fits"


def test_put_verifies_against_the_board(mb: Board) -> None:
    mb.put(b"abc", "v.txt")
    assert mb.files.matches(b"abc", "v.txt")
    assert not mb.files.matches(b"abd", "v.txt")
    assert not mb.files.matches(b"abcd", "v.txt")


def test_paths_are_checked(mb: Board) -> None:
    with pytest.raises(ValueError, match="leaves"):
        mb.put(b"x", "../escape.txt")
    with pytest.raises(UnsupportedOperation, match="flat"):
        mb.put(b"x", "dir/file.txt")
    with pytest.raises(UnsupportedOperation, match="flat"):
        mb.mkdir("dir")
    mb.put(b"root", "/rooted.txt")
    assert mb.get("rooted.txt") == b"root"


def test_missing_file_is_a_device_error(mb: Board) -> None:
    with pytest.raises(DeviceError, match="OSError"):
        mb.get("nope.txt")


def test_deploy_skips_identical_files(mb: Board, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('app')\n")
    (app / "lib.py").write_text("X = 1\n")
    (app / "data.bin").write_bytes(bytes(range(256)))
    (app / ".hidden").write_text("no")
    first = mb.deploy(app)
    assert sorted(first.copied) == ["data.bin", "lib.py", "main.py"] and first.skipped == []
    second = mb.deploy(app)
    assert second.copied == [] and sorted(second.skipped) == ["data.bin", "lib.py", "main.py"]
    (app / "lib.py").write_text("X = 2\n")
    third = mb.deploy(app)
    assert third.copied == ["lib.py"]
    assert mb.eval("__import__('lib').X") == 2
    mb.remove("main.py")  # keep later tests' boots quiet


def test_deploy_refuses_links_out_of_the_tree(mb: Board, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    (app / "link.txt").symlink_to(secret)
    with pytest.raises(BoardError, match="outside"):
        mb.deploy(app)


@pytest.mark.parametrize(
    ("bad", "refusal"),
    [("z_link.txt", "z_link.txt.*outside"), ("z_dir", "z_dir.*outside"), ("z_sub", "z_sub/c.py.*flat")],
)
def test_deploy_checks_the_whole_tree_before_copying_anything(
    mb: Board, tmp_path: Path, bad: str, refusal: str
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "a.py").write_text("A = 1\n")  # sorts before the bad entry: it used to be copied first
    (app / "b.py").write_text("B = 1\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    if bad == "z_sub":  # a directory, on the micro:bit's flat file system
        (app / bad).mkdir()
        (app / bad / "c.py").write_text("C = 1\n")
    else:
        (app / bad).symlink_to(outside / "secret.txt" if bad.endswith(".txt") else outside)
    with pytest.raises((BoardError, UnsupportedOperation), match=refusal):
        mb.deploy(app)
    assert mb.ls() == []


# -- timeouts a call names -------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf")])
def test_a_bad_timeout_is_refused_before_anything_runs(mb: Board, bad: float) -> None:
    mb.exec("_bf_t_ran = 0")
    with pytest.raises(ValueError, match=f"timeout.*{bad!r}"):
        mb.exec("_bf_t_ran = 1", timeout=bad)
    with pytest.raises(ValueError, match=f"timeout.*{bad!r}"):
        mb.start("_bf_t_ran = 2", timeout=bad)
    with pytest.raises(ValueError, match=f"timeout.*{bad!r}"):
        mb.expect("never printed", timeout=bad)
    with pytest.raises(ValueError, match=f"timeout.*{bad!r}"):
        mb.interrupt(timeout=bad)
    assert not mb.running
    assert mb.eval("_bf_t_ran") == 0


def test_a_zero_timeout_means_now(mb: Board) -> None:
    with pytest.raises(BoardTimeout):
        mb.expect("never printed", timeout=0)
    assert mb.eval("1 + 1") == 2


def test_a_bad_board_timeout_is_refused_at_connect(emulator: MicrobitEmulator) -> None:
    with pytest.raises(ValueError, match="timeout.*nan"):
        connect(emulator.url, timeout=float("nan"))
    with connect(emulator.url, timeout=10) as board:  # the port was closed: the board is free
        assert board.eval("2 + 2") == 4


# -- entering the raw REPL from any state --------------------------------------


def _raw_socket(url: str) -> socket.socket:
    host, port = url.removeprefix("socket://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_connect_when_already_in_raw_mode(emulator: MicrobitEmulator) -> None:
    with _raw_socket(emulator.url) as sock:
        sock.sendall(b"\r\x03\r\x01")
        time.sleep(0.2)
    with connect(emulator.url) as board:
        assert board.eval("3 * 3") == 9


def test_connect_with_junk_in_the_input_buffer(emulator: MicrobitEmulator) -> None:
    with _raw_socket(emulator.url) as sock:
        sock.sendall(b"\r\x03garbage ((( 'unterminated")
        time.sleep(0.2)
    with connect(emulator.url) as board:
        assert board.eval("'clean'") == "clean"


def test_connect_to_a_busy_board(emulator: MicrobitEmulator) -> None:
    """main.py prints without end after a hard reset; connect still gets in."""
    with connect(emulator.url) as board:
        board.put(b"i = 0\nwhile True:\n    print('busy', i)\n    i += 1\n", "main.py")
    emulator.hard_reset()
    time.sleep(0.3)
    with connect(emulator.url) as board:
        assert board.eval("'got in'") == "got in"
        board.remove("main.py")


def test_connect_to_a_program_waiting_in_a_loop(emulator: MicrobitEmulator) -> None:
    with _raw_socket(emulator.url) as sock:
        sock.sendall(b"\r\x03\r\x01import microbit\nwhile True:\n    microbit.sleep(10)\n\x04")
        time.sleep(0.2)
    with connect(emulator.url) as board:
        assert board.eval("1") == 1


def test_nothing_listening_is_connection_lost() -> None:
    from pytest_boardfarm.emulator import free_port

    with pytest.raises(ConnectionLost, match="cannot open"):
        connect(f"socket://127.0.0.1:{free_port()}", timeout=1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("socket://127.0.0.1:99999", "cannot open socket://127.0.0.1:99999: expected socket://host:port"),
        ("rfc2217://127.0.0.1", "cannot open rfc2217://127.0.0.1: expected rfc2217://host:port"),
        ("rfc2217://127.0.0.1:65536?ign_set_control", "expected rfc2217://host:port"),
    ],
)
def test_a_url_without_a_usable_port_is_connection_lost(url: str, expected: str) -> None:
    """A port out of range was a bare ValueError (a test error without the board's health)."""
    with pytest.raises(ConnectionLost, match=re.escape(expected)):
        connect(url, timeout=1)


def test_silent_port_times_out_with_what_it_saw() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    start = time.monotonic()
    try:
        with pytest.raises(BoardTimeout, match="could not enter the raw REPL"):
            connect(f"socket://127.0.0.1:{port}", timeout=2)
    finally:
        server.close()
    assert time.monotonic() - start < 4


def test_an_rfc2217_url_to_a_port_that_never_speaks_telnet_says_so() -> None:
    """A raw TCP port (ser2net's plain 'tcp' accepter, labgrid's 'protocol: raw') named as
    rfc2217:// timed out with only "the board printed: ''"; an RFC 2217 server negotiates at once."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        with pytest.raises(BoardTimeout, match=rf"never negotiated telnet.*socket://127\.0\.0\.1:{port}"):
            connect(f"rfc2217://127.0.0.1:{port}", timeout=1)
        with pytest.raises(BoardTimeout) as caught:
            connect(f"socket://127.0.0.1:{port}", timeout=1)
        assert "telnet" not in str(caught.value)
    finally:
        server.close()


def test_board_that_goes_away_is_connection_lost() -> None:
    with MicrobitEmulator() as emu:
        board = connect(emu.url, timeout=3)
        emu.stop()
        with pytest.raises(ConnectionLost):
            board.exec("print(1)")
        board.close()
