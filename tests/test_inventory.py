"""farm.yaml: every mistake reported at once, with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_boardfarm.inventory import NAME_RULE, FarmConfigError, UnknownBoard, load_farm, parse_farm

ROOT = Path(__file__).resolve().parent.parent


def problems(text: str) -> list[str]:
    with pytest.raises(FarmConfigError) as info:
        parse_farm(text, "farm.yaml", Path("/farm"))
    return info.value.problems


def test_example_farm_loads() -> None:
    farm = load_farm(ROOT / "farm.example.yaml")
    assert farm.names == ["sim-1", "sim-2", "sim-3", "sim-4"]
    sim1 = farm.get("sim-1")
    assert sim1.emulator == "microbit" and sim1.platform == "microbit"
    assert sim1.tags == ("display", "fast") and sim1.properties == {"lab": "example"}


def test_every_problem_at_once_with_line_and_key() -> None:
    found = problems(
        """\
boards:
  - name: a
    port: /dev/ttyACM0
    baudrate: fast
  - name: a
    emulator: microbit
  - platform: rp2040
  - name: c
    emulatr: microbit
"""
    )
    assert found == [
        "farm.yaml:4: boards[0].baudrate: expected a whole number from 1 to 20000000, got 'fast'",
        "farm.yaml:5: boards[1].name: duplicate board name 'a' (first at farm.yaml:2)",
        "farm.yaml:7: boards[2].name: missing; every board needs a name",
        "farm.yaml:7: boards[2].port: missing; give 'port' (a device or pyserial URL), 'serial_number', 'emulator' or 'place' (labgrid)",
        "farm.yaml:8: boards[3] (c).port: missing; give 'port' (a device or pyserial URL), 'serial_number', 'emulator' or 'place' (labgrid)",
        "farm.yaml:9: boards[3].emulatr: unknown key (did you mean 'emulator'?)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "boards:\n  - name: x\n    port: p\n    tags: fast\n",
            "farm.yaml:4: boards[0].tags: expected a list of strings",
        ),
        (
            "boards:\n  - name: x\n    port: p\n    timeout: -1\n",
            "farm.yaml:4: boards[0].timeout: expected a number of seconds, more than 0",
        ),
        ("boards:\n  - name: 7\n    port: p\n", "farm.yaml:2: boards[0].name: expected a string, got int 7"),
        (
            "boards:\n  - name: x\n    emulator: qemu\n",
            "boards[0].emulator: unknown emulator 'qemu'; known: microbit, unix, webassembly",
        ),
        ("boards:\n  - name: x\n    emulator: microbit\n    port: p\n", "an emulated board has no 'port'"),
        ("boards: {}\n", "farm.yaml:1: boards: expected a list of boards, got a mapping"),
        ("bords: []\n", "farm.yaml:1: bords: unknown key (did you mean 'boards'?)"),
        ("defaults:\n  name: x\nboards: []\n", "defaults.name: must be set per board"),
        ("boards:\n  - name: x\n    port: p\n    reset: 'a \"b'\n", "boards[0].reset: cannot split command"),
        ("boards:\n  - [x]\n", "farm.yaml:2: boards[0]: expected a mapping, got a list"),
        ("boards:\n  - name: x\n   port: p\n", "farm.yaml:3: not valid YAML"),
        ("", "farm.yaml: the file is empty"),
        (
            "boards:\n  - name: x\n    port: ''\n",
            "farm.yaml:3: boards[0].port: expected a port or pyserial URL, got ''",
        ),
        (
            "boards:\n  - {name: x, serial_number: ' '}\n",
            "farm.yaml:2: boards[0].serial_number: expected a USB serial number, got ' '",
        ),
        (
            "coordinator: lab:1\nboards:\n  - {name: x, place: ''}\n",
            "farm.yaml:3: boards[0].place: expected a labgrid place name, got ''",
        ),
    ],
)
def test_single_mistakes(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_defaults_are_inherited_and_properties_merged() -> None:
    farm = parse_farm(
        "defaults: {timeout: 3, baudrate: 9600, properties: {lab: x}}\n"
        "boards:\n  - {name: a, port: p, properties: {desk: 2}}\n  - {name: b, port: q, timeout: 5}\n",
        "farm.yaml",
        Path("/farm"),
    )
    a, b = farm.boards
    assert (a.timeout, a.baudrate, a.properties) == (3.0, 9600, {"lab": "x", "desk": "2"})
    assert (b.timeout, b.properties) == (5.0, {"lab": "x"})


def test_every_registered_emulator_is_accepted_and_names_the_platform() -> None:
    farm = parse_farm(
        "boards:\n  - {name: a, emulator: microbit}\n  - {name: b, emulator: webassembly}\n", "farm.yaml", Path("/f")
    )
    assert [(b.emulator, b.platform) for b in farm.boards] == [("microbit", "microbit"), ("webassembly", "webassembly")]


def test_command_templates_are_argument_lists() -> None:
    farm = parse_farm(
        "boards:\n  - name: a\n    port: p\n    reset: uhubctl -p '{port}' -a cycle\n"
        "    flash: [esptool.py, --port, '{port}', write_flash, '0x0', '{image}']\n",
        "farm.yaml",
        Path("/farm"),
    )
    assert farm.boards[0].reset == ("uhubctl", "-p", "{port}", "-a", "cycle")
    assert farm.boards[0].flash[-1] == "{image}"


def test_paths_are_relative_to_the_farm_file(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text("locks: {dir: locks}\nboards:\n  - {name: a, port: p, deploy: app}\n")
    farm = load_farm(path)
    assert farm.lock_dir == tmp_path / "locks" and farm.boards[0].deploy == tmp_path / "app"


def test_unknown_board_names_the_ones_that_exist() -> None:
    farm = parse_farm("boards:\n  - {name: sim-1, port: p}\n  - {name: sim-2, port: q}\n", "f.yaml", Path("/"))
    with pytest.raises(UnknownBoard, match=r"no board named 'sim-3'.*did you mean 'sim-[12]'.*sim-1, sim-2"):
        farm.get("sim-3")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(FarmConfigError, match="cannot read the farm inventory"):
        load_farm(tmp_path / "missing.yaml")


def test_guessing_the_board_from_a_test_id_only_when_unambiguous() -> None:
    from pytest_boardfarm.identity import guess_board

    boards = ["sim-1", "sim-10", "desk", "a", "a-1", "café"]
    assert guess_board("t.py::test_x[sim-1]", boards) == "sim-1"
    assert guess_board("t.py::test_x[sim-10-3]", boards) == "sim-10"
    assert guess_board("t.py::test_x[sim-1-a-b]", boards) == "sim-1"
    assert guess_board("t.py::Test::test_x[desk]", boards) == "desk"
    assert guess_board("t.py::test_x[caf\\xe9-1]", boards) == "café"  # pytest escapes non-ASCII ids
    assert guess_board("t.py::test_x[a-1]", boards) is None  # board a with "1", or board a-1: cannot tell
    assert guess_board("t.py::test_x[a-2]", boards) == "a"
    assert guess_board("t.py::test_plain", boards) is None
    assert guess_board("t.py::test_x[no-board]", boards) is None
    assert guess_board("t.py::test_x[other-sim-1]", boards) is None


# -- refused at load time, never a traceback (issue 9, "Farm files") ---------------------


def one_board(extra: str, name: str = "x") -> str:
    return f"boards:\n  - name: {name}\n    port: /dev/ttyACM0\n{extra}"


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_bytes(b"boards:\n  - name: caf\xe9\n    port: p\n")
    with pytest.raises(FarmConfigError) as info:
        load_farm(path)
    assert info.value.problems == [f"{path}:2: not UTF-8 text (byte 0xe9 at column 14); save the file as UTF-8"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (one_board("    timeout: !evil 3\n"), "farm.yaml:4: boards[0].timeout: YAML tag !evil is not allowed"),
        (
            "boards:\n  - name: x\n    port: !!python/object/apply:os.system [echo pwned]\n",
            "farm.yaml:3: boards[0].port: YAML tag !!python/object/apply:os.system is not allowed",
        ),
        (one_board("    platform: =\n"), "farm.yaml:4: boards[0].platform: YAML tag !!value is not allowed"),
        (one_board("    tags: !!set {a, b}\n"), "farm.yaml:4: boards[0].tags: YAML tag !!set is not allowed"),
        ("!farm\nboards: []\n", "farm.yaml:1: (top level): YAML tag !farm is not allowed"),
        (one_board("    !evil x: 3\n"), "farm.yaml:4: boards[0]: a key must be a plain name"),
        (one_board("    [a]: 3\n"), "farm.yaml:4: boards[0]: a key must be a plain name, not a list"),
        (
            "d: &d {timeout: 3}\nboards:\n  - {<<: *d, name: x, port: p}\n",
            "farm.yaml:3: boards[0]: YAML merge keys (<<)",
        ),
    ],
)
def test_yaml_tags_are_refused(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_every_tag_is_reported_at_once() -> None:
    found = problems(one_board("    timeout: !a 3\n    baudrate: !b 1\n    tags: [!c x]\n"))
    assert [p.split(": YAML")[0] for p in found] == [
        "farm.yaml:4: boards[0].timeout",
        "farm.yaml:5: boards[0].baudrate",
        "farm.yaml:6: boards[0].tags[0]",
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (one_board("    properties: " + "[" * 5000 + "]" * 5000 + "\n"), 4),
        (one_board("    properties:\n" + "".join(f"{'  ' * (i + 3)}k{i}:\n" for i in range(3000))), 33),
        ("boards: " + "[" * 100_000 + "\n", 1),  # not even closed: refused before the parser would say so
    ],
    ids=["flow", "block", "unclosed"],
)
def test_deep_nesting_is_refused_with_its_line(text: str, line: int) -> None:
    assert problems(text) == [f"farm.yaml:{line}: nested more than 32 levels deep"]


def test_nesting_a_farm_file_needs_is_fine() -> None:
    farm = parse_farm(one_board("    tags: [a, b]\n    properties: {a: 1}\n"), "farm.yaml", Path("/farm"))
    assert farm.names == ["x"]


def test_repeated_keys_are_refused() -> None:
    found = problems(
        "boards:\n  - name: a\n    port: /dev/ttyACM0\n    port: /dev/ttyACM1\n"
        "locks: {dir: x, dir: y}\n"
        "boards:\n  - name: b\n    port: /dev/ttyACM2\n"
    )
    assert found == [
        "farm.yaml:4: boards[0].port: key repeated (first at line 3)",
        "farm.yaml:5: locks.dir: key repeated (first at line 5)",
        "farm.yaml:6: boards: key repeated (first at line 1)",
    ]


def billion_laughs(levels: int = 9) -> str:
    """Each level lists the one before 9 times: 9**levels strings if anyone expands it."""
    lines = ["l0: &l0 lol"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def problems_in_a_child(text: str, deadline: float = 60) -> list[str]:
    """problems(text), in a child process with a deadline, for input that could hang a wrong loader."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\nfrom pathlib import Path\n"
        "from pytest_boardfarm.inventory import FarmConfigError, parse_farm\n"
        "try:\n    parse_farm(sys.stdin.read(), 'farm.yaml', Path('/farm'))\n"
        "except FarmConfigError as exc:\n    print(json.dumps(exc.problems))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, timeout=deadline)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_an_alias_bomb_costs_its_size_not_its_expansion() -> None:
    bomb = billion_laughs()
    text = bomb + "boards:\n  - {name: x, port: p, tags: *l9, properties: {k: *l9}}\n  - *l9\n"
    found = problems_in_a_child(text)  # 9**9 (387 million) strings if anything expanded it
    assert "farm.yaml:1: l0: unknown key" in found[0]
    assert any("boards[0].tags[0]: expected a string, got a list" in p for p in found)
    assert any("boards[1]: expected a mapping, got a list" in p for p in found)


def test_an_alias_of_itself_is_walked_once() -> None:
    found = problems("boards: &b [*b]\n")
    assert found == ["farm.yaml:1: boards[0]: expected a mapping, got a list"]


def test_aliases_for_real_reuse_work() -> None:
    farm = parse_farm(
        "boards:\n  - {name: a, port: p, tags: &t [wifi, fast]}\n  - {name: b, port: q, tags: *t}\n",
        "farm.yaml",
        Path("/farm"),
    )
    assert [b.tags for b in farm.boards] == [("wifi", "fast"), ("wifi", "fast")]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("timeout: .inf", "timeout: expected a number of seconds, more than 0 and at most 86400, got inf"),
        ("timeout: .nan", "timeout: expected a number of seconds, more than 0 and at most 86400, got nan"),
        ("timeout: 1e308", "timeout: expected a number of seconds, more than 0 and at most 86400, got '1e308'"),
        ("timeout: 1.0e+400", "timeout: expected a number of seconds, more than 0 and at most 86400, got inf"),
        ("timeout: 86401", "timeout: expected a number of seconds, more than 0 and at most 86400, got 86401"),
        ("timeout: 0", "timeout: expected a number of seconds, more than 0 and at most 86400, got 0"),
        ("timeout: 1" + "0" * 5000, "timeout: expected a number of seconds, more than 0 and at most 86400, got '10000"),
        ("baudrate: 1.5", "baudrate: expected a whole number from 1 to 20000000, got 1.5"),
        ("baudrate: 2.0", "baudrate: expected a whole number from 1 to 20000000, got 2.0"),
        ("baudrate: 0", "baudrate: expected a whole number from 1 to 20000000, got 0"),
        ("baudrate: 1" + "0" * 5000, "baudrate: expected a whole number from 1 to 20000000, got '10000"),
        ("write_window: 2.9", "write_window: expected a whole number of bytes from 1 to 65536, got 2.9"),
        ("write_window: 100000", "write_window: expected a whole number of bytes from 1 to 65536, got 100000"),
    ],
)
def test_numbers_are_finite_whole_and_in_range(extra: str, expected: str) -> None:
    found = problems(one_board(f"    {extra}\n"))
    assert len(found) == 1 and found[0].startswith(f"farm.yaml:4: boards[0].{expected}"), found


def test_numbers_in_range_are_kept() -> None:
    farm = parse_farm(
        one_board("    timeout: 0.25\n    baudrate: '9600'\n    write_window: 65536\n"), "farm.yaml", Path("/f")
    )
    board = farm.boards[0]
    assert (board.timeout, board.baudrate, board.write_window) == (0.25, 9600, 65536)
    assert parse_farm(one_board("    timeout: 86400\n"), "f", Path("/f")).boards[0].timeout == 86400.0


def test_templates_are_checked_at_load_time_all_at_once() -> None:
    found = problems(
        "defaults:\n  reset: [hub, '{nosuch}']\n"
        "boards:\n  - name: a\n    port: p\n"
        "    reset: [hub, '{port.__class__}', '{port[0]}', '{port!r}', '{port:>10}', '{}', '{port']\n"
        "    flash: [esptool, '{image}', '{port}', '{firmware}']\n"
        "  - name: b\n    port: q\n    reset: cycle {image}\n"
    )
    known = "known: {name}, {port}, {serial_number}, {platform}"
    assert found == [
        f"farm.yaml:2: defaults.reset: unknown field {{nosuch}}; {known}",
        f"farm.yaml:6: boards[0].reset: unknown field {{port.__class__}}; {known}",
        f"farm.yaml:6: boards[0].reset: unknown field {{port[0]}}; {known}",
        "farm.yaml:6: boards[0].reset: {port!r}: only a plain {port} is allowed (no conversion or format spec)",
        "farm.yaml:6: boards[0].reset: {port:>10}: only a plain {port} is allowed (no conversion or format spec)",
        f"farm.yaml:6: boards[0].reset: unknown field {{}}; {known}",
        "farm.yaml:6: boards[0].reset: argument '{port': expected '}' before end of string (write {{ or }} for a literal brace)",
        f"farm.yaml:7: boards[0].flash: unknown field {{firmware}}; {known}, {{image}}",
        f"farm.yaml:10: boards[1].reset: unknown field {{image}}; {known}",
    ]


def test_good_templates_and_literal_braces_load() -> None:
    farm = parse_farm(
        one_board("    reset: [hub, --json, '{{\"p\": 1}}', '{port}', '{serial_number}']\n"), "f", Path("/f")
    )
    assert farm.boards[0].reset == ("hub", "--json", '{{"p": 1}}', "{port}", "{serial_number}")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("'..'", "starts with '.'"),
        ("'.hidden'", "starts with '.'"),
        ("-x", "starts with '-'"),
        ("/", "'/' not allowed"),
        ("/etc/passwd", "'/' not allowed"),
        ("../../outside", "'/' not allowed"),
        ("'a\\b'", "'\\\\' not allowed"),
        ('"a\\0b"', "'\\x00' not allowed"),
        ("''", "empty"),
        ("a" * 65, "65 characters"),
        ("a" * 101, "101 characters"),
        ("a b", "' ' not allowed"),
        ("'x[1]'", "'[' not allowed"),
        ("'a::b'", "':' not allowed"),
        ("a@gw0", "'@' not allowed"),
        ("caf\u0065\u0301", "'\u0301' not allowed"),  # decomposed é: write it composed
        ("no-board", "'no-board' is reserved"),
    ],
)
def test_board_names_that_cannot_be_a_file_name_or_test_id(name: str, why: str) -> None:
    found = problems(f"boards:\n  - port: p\n    name: {name}\n")
    assert len(found) == 1 and found[0].startswith(f"farm.yaml:3: boards[0].name: {why}"), found
    if why != "'no-board' is reserved":
        assert found[0].endswith("a board name is " + NAME_RULE)


def test_the_name_rule_as_documented() -> None:
    assert NAME_RULE == "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
    assert NAME_RULE in (ROOT / "README.md").read_text()


def test_board_names_a_user_would_write() -> None:
    names = ["sim-1", "desk_pico.2", "ESP32-S3", "café", "板1", "1st", "a" * 64]
    text = "boards:\n" + "".join(f"  - {{name: '{n}', port: p{i}}}\n" for i, n in enumerate(names))
    assert parse_farm(text, "farm.yaml", Path("/farm")).names == names


@pytest.mark.parametrize("kind", ["fifo", "/dev/null", "directory"])
def test_only_a_regular_file_is_read(tmp_path: Path, kind: str) -> None:
    """Run in a child with a deadline: before the fix, reading a FIFO blocked forever."""
    import os
    import subprocess
    import sys

    path = tmp_path / "farm.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path(kind)
    code = "import sys\nfrom pytest_boardfarm.inventory import load_farm\nload_farm(sys.argv[1])\n"
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30)
    label = {"fifo": "a FIFO", "/dev/null": "a character device", "directory": "a directory"}[kind]
    assert f"FarmConfigError: invalid farm inventory:\n  {path}: not a regular file ({label})" in done.stderr


def test_a_farm_file_of_a_megabyte_is_the_wrong_file(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\nboards: []\n")
    with pytest.raises(FarmConfigError, match="larger than 1024 KiB; is this the farm inventory"):
        load_farm(path)


def test_two_entries_for_one_port_or_serial_number(tmp_path: Path) -> None:
    device = tmp_path / "ttyACM0"
    device.touch()
    link = tmp_path / "by-id-board"
    link.symlink_to(device)
    found = problems(
        "boards:\n"
        "  - {name: a, port: /dev/ttyACM7}\n"
        "  - {name: b, port: /dev/ttyACM7}\n"
        "  - {name: c, serial_number: E661}\n"
        "  - {name: d, serial_number: E661}\n"
        f"  - {{name: e, port: {device}}}\n"
        f"  - {{name: f, port: {link}}}\n"
        "  - {name: g, port: 'socket://127.0.0.1:5000'}\n"
        "  - {name: h, port: 'socket://127.0.0.1:5000'}\n"
        "  - {name: i, port: 'socket://127.0.0.1:5001'}\n"
        "  - {name: j, emulator: microbit}\n  - {name: k, emulator: microbit}\n"
    )
    assert found == [
        "farm.yaml:3: boards[1].port: same port as board 'a' (first at farm.yaml:2)",
        "farm.yaml:5: boards[3].serial_number: same serial number as board 'c' (first at farm.yaml:4)",
        f"farm.yaml:7: boards[5].port: same device as board 'e' ({device}) (first at farm.yaml:6)",
        "farm.yaml:9: boards[7].port: same port as board 'g' (first at farm.yaml:8)",
    ]


def test_a_control_character_is_refused_with_its_line() -> None:
    assert problems("boards:\n  - name: a\x1f\n") == [
        "farm.yaml:2: not valid YAML: special characters are not allowed '\\x1f'"
    ]


_SCALARS = st.sampled_from(
    ["x", "1", "1.5", ".inf", ".nan", "true", "~", "'{port}'", "'{x}'", "'{port!r}'", "!evil x", "=", "2024-13-45"]
    + ["1e308", "'..'", "/", "no-board", "&a x", "*a", "'a b'", "sim-1", "microbit", "[]", "{}", '"\\0"']
)
_KEYS = st.sampled_from(["name", "port", "emulator", "serial_number", "tags", "baudrate", "timeout", "reset"])
_KEYS |= st.sampled_from(["flash", "rts_reset", "write_window", "properties", "boards", "defaults", "locks", "<<"])


def _yamlish(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return _SCALARS
    inner = _yamlish(depth - 1)
    return st.one_of(
        _SCALARS,
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(_KEYS, inner), max_size=5).map(lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(_yamlish(4), st.text(max_size=100)))
def test_any_text_is_a_farm_or_a_list_of_problems(text: str) -> None:
    """Never a traceback: whatever the file holds, the answer is a Farm or FarmConfigError."""
    try:
        parse_farm(text, "farm.yaml", Path("/farm"))
    except FarmConfigError as exc:
        assert exc.problems and all(p.startswith("farm.yaml") for p in exc.problems)
