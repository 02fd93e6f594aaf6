"""The farm inventory: ``farm.yaml`` read, validated and turned into plain data.

Every problem is reported at once, each with file, line and key, because a
person fixing a farm file wants the whole list, not one error per run.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .commands import FIELDS, FLASH_FIELDS, template_problems
from .emulators import EMULATORS
from .places import EXTRA, labgrid_installed

MAX_FILE_BYTES = 1 << 20  # a farm file is a few KiB; more is the wrong file
MAX_DEPTH = 32  # a farm file nests 4 levels; deeper is a mistake (or an attack on the parser)
MAX_SECONDS = 86400.0  # one day: the longest deadline or wait that makes sense
NAME_MAX = 64
NAME_RULE = f"1 to {NAME_MAX} letters, digits, '-', '_' or '.', starting with a letter or digit"
RESERVED_NAMES = ("no-board",)  # the test id of a test no board matches (session.py)


@dataclass(frozen=True)
class FirmwareSpec:
    """The firmware a board must run (``firmware:`` in farm.yaml), paths resolved."""

    image: Path
    version: str | None = None  # a regex os.uname()/sys.version must match after flashing
    check: str | None = None  # a Python expression that must be true on the board after boot
    fallback: Path | None = None  # the last known-good image, flashed back when the new one fails
    where: str = ""


@dataclass(frozen=True)
class BoardSpec:
    """One board as farm.yaml describes it."""

    name: str
    port: str | None = None
    emulator: str | None = None
    serial_number: str | None = None
    platform: str = ""
    tags: tuple[str, ...] = ()
    baudrate: int = 115200
    timeout: float = 10.0
    reset: tuple[str, ...] = ()  # argument template, e.g. ("uhubctl", "-p", "{port}", "-a", "cycle")
    flash: tuple[str, ...] = ()
    firmware: FirmwareSpec | None = None
    rts_reset: bool = False  # hard reset by pulsing RTS (wired to EN/RESET on most dev boards)
    dtr: bool = True  # the modem lines while the port is open: asserted, as mpremote holds them
    rts: bool = True
    deploy: Path | None = None
    place: str | None = None  # a labgrid place (on the farm's coordinator) whose serial port is this board
    write_window: int = 48
    properties: dict[str, str] = field(default_factory=dict)
    where: str = ""  # "farm.yaml:12", for messages

    def matches(self, *, names: Iterable[str] = (), platforms: Iterable[str] = (), tags: Iterable[str] = ()) -> bool:
        names, platforms = list(names), list(platforms)
        return (
            (not names or self.name in names)
            and (not platforms or self.platform in platforms)
            and set(tags) <= set(self.tags)
        )

    def describe(self) -> str:
        tags = f" tags={list(self.tags)}" if self.tags else ""
        return f"{self.name} (platform={self.platform or '?'}{tags})"


@dataclass(frozen=True)
class Farm:
    boards: tuple[BoardSpec, ...]
    lock_dir: Path
    path: Path | None = None
    coordinator: str | None = None  # labgrid's coordinator, HOST[:PORT] (farm.yaml or LG_COORDINATOR)

    def get(self, name: str) -> BoardSpec:
        for board in self.boards:
            if board.name == name:
                return board
        raise UnknownBoard(name, [b.name for b in self.boards])

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.boards]


class FarmConfigError(Exception):
    """farm.yaml is broken; the message lists every problem with file, line and key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid farm inventory:\n  " + "\n  ".join(self.problems))


class UnknownBoard(KeyError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        hint = did_you_mean(name, known)
        super().__init__(f"no board named {name!r} in the farm{hint}; the farm has: {', '.join(known) or 'no boards'}")

    def __str__(self) -> str:
        return str(self.args[0])


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "pytest-boardfarm-locks"


# -- reading YAML safely ---------------------------------------------------------

Node = yaml.Node
_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_TAG + kind for kind in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map")}


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """YAML's safe composer with a depth limit, so nesting can never exhaust Python's stack.

    (Its scanner and parser keep explicit stacks; only composing recurses.)
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self._depth >= MAX_DEPTH:
            raise _TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _compose(text: str, filename: str) -> Node | None:
    """The document's node tree; anchors stay shared nodes, never copies."""
    try:
        loader = _Loader(text)  # checks the characters first
    except yaml.reader.ReaderError as exc:
        at = text.count("\n", 0, exc.position) + 1
        raise FarmConfigError([f"{filename}:{at}: not valid YAML: {exc.reason} {chr(exc.character)!r}"]) from None
    try:
        return loader.get_single_node()
    except _TooDeep as exc:
        raise FarmConfigError([f"{filename}:{exc.mark.line + 1}: nested more than {MAX_DEPTH} levels deep"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise FarmConfigError([f"{filename}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    finally:
        loader.dispose()


def _check_structure(c: _Checker, root: Node) -> bool:
    """Report YAML a farm file has no use for; True if reading on would be unsafe.

    Tags (``!evil``, ``!!python/object``) would make the loader construct something;
    keys must be plain names, each once per mapping (YAML itself lets the last win).
    Every node is visited once, so an alias bomb costs its size, not its expansion.
    """
    fatal = False
    seen: set[int] = set()
    todo: list[tuple[Node, str]] = [(root, "(top level)")]
    while todo:
        node, path = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.tag not in _PLAIN_TAGS:
            c.problem(node, path, f"YAML tag {_tag_name(node.tag)} is not allowed (quote the value if it is text)")
            fatal = True
        if isinstance(node, yaml.SequenceNode):
            todo += [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            first: dict[str, Node] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                    fatal = True
                    if key_node.tag == _TAG + "merge":
                        c.problem(key_node, path, "YAML merge keys (<<) are not supported; use 'defaults'")
                    elif isinstance(key_node, yaml.ScalarNode):
                        c.problem(key_node, path, f"a key must be a plain name, not tagged {_tag_name(key_node.tag)}")
                    else:
                        c.problem(key_node, path, f"a key must be a plain name, not {_kind(key_node)}")
                    continue
                key = str(key_node.value)
                child = key if path == "(top level)" else f"{path}.{key}"
                if key in first:
                    c.problem(key_node, child, f"key repeated (first at line {first[key].start_mark.line + 1})")
                else:
                    first[key] = key_node
                todo.append((value_node, child))
    return fatal


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


# -- validation ------------------------------------------------------------------


class _Checker:
    """Collects problems while converting YAML nodes to values."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[str] = []

    def where(self, node: Node) -> str:
        return f"{self.filename}:{node.start_mark.line + 1}"

    def problem(self, node: Node, key: str, message: str) -> None:
        self.problems.append(f"{self.where(node)}: {key}: {message}")

    def mapping(self, node: Node, key: str) -> list[tuple[str, Node, Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, key, f"expected a mapping, got {_kind(node)}")
            return None
        out = []
        for key_node, value_node in node.value:
            out.append((str(key_node.value), key_node, value_node))
        return out

    def scalar(self, node: Node, key: str, kind: Callable[[Any], Any], label: str) -> Any:
        value = _scalar_value(node) if isinstance(node, yaml.ScalarNode) else None
        if value is None or isinstance(value, bool) and kind is not _boolean:
            self.problem(node, key, f"expected {label}, got {_kind(node)}")
            return None
        if kind in (str, _filled) and not isinstance(value, str):
            self.problem(node, key, f"expected {label}, got {type(value).__name__} {short_repr(value)}")
            return None
        try:
            return kind(value)
        except (TypeError, ValueError):
            self.problem(node, key, f"expected {label}, got {short_repr(value)}")
            return None


def _scalar_value(node: Node) -> Any:
    """A scalar node's value, as YAML's safe loader types it (int, float, bool, str...).

    Dates stay text (a farm file has none, and ``2024-13-45`` must not crash the
    loader); a number too long to convert stays text too, and is refused as text.
    """
    if node.tag == _TAG + "timestamp":
        return node.value
    try:
        return yaml.safe_load(yaml.serialize(node))
    except (ValueError, OverflowError, yaml.YAMLError):
        return node.value


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a typo, or ""."""
    import difflib  # a typo's suggestion only: not every process

    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def short_repr(value: Any) -> str:
    """repr() cut to a length a message can show."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def _kind(node: Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag.endswith(":null"):
        return "nothing"
    return short_repr(_scalar_value(node))


def _whole(low: int, high: int) -> Callable[[Any], int]:
    """A whole number in [low, high]; 1.5 or 2.0 is not one (nothing is truncated)."""

    def convert(value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value):
            value = int(value)
        if type(value) is not int or not low <= value <= high:
            raise ValueError(value)
        return value

    return convert


def seconds(value: Any, *, zero_ok: bool = False) -> float:
    """A duration: a finite number of seconds, more than 0 (or 0 when zero_ok), at most a day."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        raise ValueError(value) from None
    if not (math.isfinite(number) and (number >= 0 if zero_ok else number > 0) and number <= MAX_SECONDS):
        raise ValueError(value)
    return number


def seconds_rule(*, zero_ok: bool = False) -> str:
    return f"a number of seconds, {'0 or more' if zero_ok else 'more than 0'} and at most {MAX_SECONDS:g}"


def seconds_argument(*, zero_ok: bool) -> Callable[[str], float]:
    """``seconds`` as an argparse type (pytest's options, the ``boardfarm`` command):
    a bad value is a usage error, not a hang (nan) or a crash (inf)."""

    def convert(text: str) -> float:
        try:
            return seconds(text, zero_ok=zero_ok)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {seconds_rule(zero_ok=zero_ok)}, got {text!r}") from None

    convert.__name__ = "seconds"  # argparse names the type in some messages
    return convert


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a board name (None: it can).

    A name is a test id part (``test_x[name]``) and a directory (serial logs go to
    ``<log dir>/<name>/``), so it must be harmless in both: no separators, no
    ``..``, no brackets, spaces or ``::``, not too long for a file name.
    """
    if not name:
        return f"empty; a board name is {NAME_RULE}"
    if len(name) > NAME_MAX or len(name.encode("utf-8")) > 255:
        return f"{len(name)} characters; a board name is {NAME_RULE}"
    bad = next((ch for ch in name if not (ch.isalnum() or ch in "-_.")), None)
    if bad is not None:
        return f"{bad!r} not allowed; a board name is {NAME_RULE}"
    if not name[0].isalnum():
        return f"starts with {name[0]!r}; a board name is {NAME_RULE}"
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved (the test id of a test that no board matches)"
    return None


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(value)
    return value


def _str_list(c: _Checker, node: Node, key: str) -> tuple[str, ...] | None:
    if not isinstance(node, yaml.SequenceNode):
        c.problem(node, key, f"expected a list of strings, got {_kind(node)}")
        return None
    items = [c.scalar(item, f"{key}[{i}]", str, "a string") for i, item in enumerate(node.value)]
    return tuple(items) if all(isinstance(i, str) for i in items) else None


def _command(fields: Sequence[str]) -> Callable[[_Checker, Node, str], tuple[str, ...] | None]:
    """A command template: a string split like a shell would, or a list of arguments,
    whose ``{field}``s are checked now, not when the board first needs the command."""

    def convert(c: _Checker, node: Node, key: str) -> tuple[str, ...] | None:
        argv = _command_argv(c, node, key)
        if argv is None:
            return None
        problems = template_problems(argv, fields)
        for problem in problems:
            c.problem(node, key, problem)
        return None if problems else argv

    return convert


def _command_argv(c: _Checker, node: Node, key: str) -> tuple[str, ...] | None:
    if isinstance(node, yaml.SequenceNode):
        argv = _str_list(c, node, key)
    else:
        text = c.scalar(node, key, str, "a command (string or list of arguments)")
        if text is None:
            return None
        try:
            argv = tuple(shlex.split(text))
        except ValueError as exc:
            c.problem(node, key, f"cannot split command: {exc}")
            return None
    if argv is not None and not argv:
        c.problem(node, key, "empty command")
        return None
    return argv


def _name(c: _Checker, node: Node, key: str) -> str | None:
    name: str | None = c.scalar(node, key, str, "a string")
    problem = None if name is None else name_problem(name)
    if problem:
        c.problem(node, key, problem)
        return None
    return name


def _properties(c: _Checker, node: Node, key: str) -> dict[str, str] | None:
    entries = c.mapping(node, key)
    if entries is None:
        return None
    out = {}
    for name, _, value in entries:
        if not isinstance(value, yaml.ScalarNode):
            c.problem(value, f"{key}.{name}", f"expected a plain value, got {_kind(value)}")
            continue
        out[name] = str(_scalar_value(value))
    return out


def _emulator(c: _Checker, node: Node, key: str) -> str | None:
    value: str | None = c.scalar(node, key, str, "an emulator name")
    if value is not None and value not in EMULATORS:
        c.problem(node, key, f"unknown emulator {value!r}; known: {', '.join(sorted(EMULATORS))}")
        return None
    return value


def _firmware(c: _Checker, node: Node, key: str) -> dict[str, Any] | None:
    """``firmware:``: image (required), version (a regex), check (an expression), fallback.
    Paths stay text here; ``_board`` resolves them against farm.yaml's directory."""
    entries = c.mapping(node, key)
    if entries is None:
        return None
    before = len(c.problems)
    out: dict[str, Any] = {"where": c.where(node)}
    for name, key_node, value in entries:
        path = f"{key}.{name}"
        if name not in _FIRMWARE_KEYS:
            _unknown(c, key_node, path, _FIRMWARE_KEYS)
            continue
        text = c.scalar(value, path, str, _FIRMWARE_KEYS[name])
        if text is None:
            continue
        if name == "version":
            try:
                re.compile(text)
            except re.error as exc:
                c.problem(value, path, f"not a valid regular expression: {exc}")
                continue
        if name == "check":
            try:
                compile(text, path, "eval")
            except SyntaxError as exc:
                c.problem(value, path, f"not a Python expression: {exc.msg}")
                continue
        out[name] = text
    if "image" not in out and len(c.problems) == before:
        c.problem(node, f"{key}.image", "missing; the firmware image to flash (a path relative to farm.yaml)")
    return out if len(c.problems) == before else None


_FIRMWARE_KEYS = {
    "image": "an image path",
    "version": "a regular expression",
    "check": "a Python expression",
    "fallback": "an image path",
}


def _filled(value: str) -> str:
    """Text that names something: ``port: ''`` would silently be no port at all."""
    if not value.strip():
        raise ValueError("blank")
    return value


# key -> converter(checker, node, key) -> value or None (problem recorded)
_BOARD_KEYS: dict[str, Callable[[_Checker, Node, str], Any]] = {
    "name": _name,
    "port": lambda c, n, k: c.scalar(n, k, _filled, "a port or pyserial URL"),
    "emulator": _emulator,
    "serial_number": lambda c, n, k: c.scalar(n, k, _filled, "a USB serial number"),
    "platform": lambda c, n, k: c.scalar(n, k, str, "a string"),
    "tags": _str_list,
    "baudrate": lambda c, n, k: c.scalar(n, k, _whole(1, 20_000_000), "a whole number from 1 to 20000000"),
    "timeout": lambda c, n, k: c.scalar(n, k, seconds, seconds_rule()),
    "reset": _command(FIELDS),
    "flash": _command(FLASH_FIELDS),
    "firmware": _firmware,
    "rts_reset": lambda c, n, k: c.scalar(n, k, _boolean, "true or false"),
    "dtr": lambda c, n, k: c.scalar(n, k, _boolean, "true or false"),
    "rts": lambda c, n, k: c.scalar(n, k, _boolean, "true or false"),
    "deploy": lambda c, n, k: c.scalar(n, k, str, "a directory path"),
    "place": lambda c, n, k: c.scalar(n, k, _filled, "a labgrid place name"),
    "write_window": lambda c, n, k: c.scalar(n, k, _whole(1, 65536), "a whole number of bytes from 1 to 65536"),
    "properties": _properties,
}
_TOP_KEYS = ("boards", "coordinator", "defaults", "locks")
_LOCK_KEYS = ("dir",)


def _unknown(c: _Checker, node: Node, key: str, known: Iterable[str]) -> None:
    c.problem(node, key, f"unknown key{did_you_mean(key.split('.')[-1], known)}")


def _board_fields(c: _Checker, node: Node, prefix: str) -> tuple[dict[str, Any], set[str]] | None:
    """Valid fields, and every key written (valid or not)."""
    entries = c.mapping(node, prefix)
    if entries is None:
        return None
    fields: dict[str, Any] = {}
    for key, key_node, value_node in entries:
        path = f"{prefix}.{key}"
        if key not in _BOARD_KEYS:
            _unknown(c, key_node, path, _BOARD_KEYS)
            continue
        value = _BOARD_KEYS[key](c, value_node, path)
        if value is not None:
            fields[key] = value
    return fields, {key for key, _, _ in entries}


def parse_farm(text: str, filename: str = "farm.yaml", base_dir: Path | None = None) -> Farm:
    """Parse and validate an inventory; raise FarmConfigError listing every problem."""
    c = _Checker(filename)
    base = base_dir or Path(filename).resolve().parent
    root = _compose(text, filename)
    if root is None:
        raise FarmConfigError([f"{filename}: the file is empty; it needs a 'boards:' list"])
    if _check_structure(c, root):
        raise FarmConfigError(sorted(c.problems, key=_line_of))
    top = c.mapping(root, "(top level)")
    if top is None:
        raise FarmConfigError(c.problems)
    sections = {key: (key_node, value) for key, key_node, value in top}
    for key, key_node, _ in top:
        if key not in _TOP_KEYS:
            _unknown(c, key_node, key, _TOP_KEYS)

    defaults: dict[str, Any] = {}
    if "defaults" in sections:
        defaults = (_board_fields(c, sections["defaults"][1], "defaults") or ({}, set()))[0]
        for key in ("name", "port", "serial_number", "place"):
            if key in defaults:
                c.problem(sections["defaults"][1], f"defaults.{key}", "must be set per board, not in defaults")

    lock_dir = default_lock_dir()
    if "locks" in sections:
        for key, key_node, value in c.mapping(sections["locks"][1], "locks") or []:
            if key not in _LOCK_KEYS:
                _unknown(c, key_node, f"locks.{key}", _LOCK_KEYS)
            else:
                path = c.scalar(value, "locks.dir", str, "a directory path")
                if path:
                    lock_dir = (base / os.path.expanduser(path)).resolve()

    boards: list[BoardSpec] = []
    if "boards" not in sections:
        c.problems.append(
            f"{filename}:{root.start_mark.line + 1}: boards: missing; list the farm's boards under 'boards:'"
        )
    else:
        boards_node = sections["boards"][1]
        if not isinstance(boards_node, yaml.SequenceNode):
            c.problem(boards_node, "boards", f"expected a list of boards, got {_kind(boards_node)}")
        else:
            seen: dict[str, str] = {}
            devices: dict[tuple[str, str], BoardSpec] = {}
            for index, node in enumerate(boards_node.value):
                name, spec = _board(c, node, f"boards[{index}]", defaults, base)
                if name is not None and name in seen:
                    c.problem(node, f"boards[{index}].name", f"duplicate board name {name!r} (first at {seen[name]})")
                    continue
                if name is not None:
                    seen[name] = c.where(node)
                if spec is not None and _one_device_one_board(c, node, f"boards[{index}]", spec, devices):
                    boards.append(spec)
    coordinator = _coordinator(c, sections, boards)
    if c.problems:
        raise FarmConfigError(sorted(c.problems, key=_line_of))
    return Farm(tuple(boards), lock_dir, Path(filename), coordinator)


_ADDRESS = r"[A-Za-z0-9_.:\[\]-]+"  # HOST[:PORT], IPv6 in brackets


def _coordinator(c: _Checker, sections: dict[str, tuple[Node, Node]], boards: list[BoardSpec]) -> str | None:
    """labgrid's coordinator (``coordinator:``, else LG_COORDINATOR), checked against the
    boards that need one; labgrid itself must be installed for either."""
    address = os.environ.get("LG_COORDINATOR") or None
    node = sections["coordinator"][1] if "coordinator" in sections else None
    if node is not None:
        address = c.scalar(node, "coordinator", str, "a labgrid coordinator address, HOST[:PORT]")
        if address is not None and not re.fullmatch(_ADDRESS, address):
            c.problem(node, "coordinator", f"not a HOST[:PORT] address: {short_repr(address)}")
    places = [b for b in boards if b.place]
    if node is None and address is not None and places and not re.fullmatch(_ADDRESS, address):
        c.problems.append(
            f"{places[0].where}: {places[0].name}.place: the coordinator from LG_COORDINATOR"
            f" is not a HOST[:PORT] address: {short_repr(address)}"
        )
    for board in places:
        if address is None and node is None:
            c.problems.append(
                f"{board.where}: {board.name}.place: needs labgrid's coordinator; set 'coordinator: HOST:PORT'"
                " at the top of farm.yaml (or LG_COORDINATOR)"
            )
    if (node is not None or places) and not labgrid_installed():
        where = c.where(node) if node is not None else places[0].where
        c.problems.append(f"{where}: coordinator: remote places need labgrid, which is not installed: {EXTRA}")
    return address if places or node is not None else None


def _device_of(spec: BoardSpec) -> list[tuple[str, str]]:
    """What identifies the board's device: its port (a device path with symlinks
    resolved, when it exists now) and its USB serial number."""
    found = []
    if spec.port:
        port = spec.port
        if "://" not in port and os.path.exists(port):
            port = os.path.realpath(port)
        found.append(("port", port))
    if spec.serial_number:
        found.append(("serial_number", spec.serial_number))
    return found


def _one_device_one_board(
    c: _Checker, node: Node, prefix: str, spec: BoardSpec, devices: dict[tuple[str, str], BoardSpec]
) -> bool:
    """Two entries for one device would lock each other out (or share it): refuse the second."""
    ok = True
    for key, device in _device_of(spec):
        first = devices.setdefault((key, device), spec)
        if first is not spec:
            what = {"port": "port", "serial_number": "serial number"}[key]
            if key == "port" and spec.port != first.port:  # two paths, one device (a symlink)
                what, device_shown = "device", f" ({device})"
            else:
                device_shown = ""
            message = f"same {what} as board {first.name!r}{device_shown} (first at {first.where})"
            c.problem(_key_node(node, key), f"{prefix}.{key}", message)
            ok = False
    return ok


def _key_node(node: Node, key: str) -> Node:
    """The node of ``key`` in a mapping (for its line), else the mapping."""
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node
    return node


def _line_of(problem: str) -> int:
    parts = problem.split(":", 2)
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


def _board(
    c: _Checker, node: Node, prefix: str, defaults: dict[str, Any], base: Path
) -> tuple[str | None, BoardSpec | None]:
    """The board's name (when it has a valid one) and its spec (when it is valid)."""
    before = len(c.problems)
    result = _board_fields(c, node, prefix)
    if result is None:
        return None, None
    fields, written = result
    merged = {**defaults, **fields}
    if "properties" in defaults and "properties" in fields:
        merged["properties"] = {**defaults["properties"], **fields["properties"]}
    name = merged.get("name")
    label = prefix + (f" ({name})" if name else "")
    if "name" not in written:
        c.problem(node, f"{prefix}.name", "missing; every board needs a name")
    if not written & {"port", "emulator", "serial_number", "place"}:
        c.problem(
            node,
            f"{label}.port",
            "missing; give 'port' (a device or pyserial URL), 'serial_number', 'emulator' or 'place' (labgrid)",
        )
    if "emulator" in written and written & {"port", "serial_number"}:
        c.problem(node, f"{label}.emulator", "an emulated board has no 'port' or 'serial_number'")
    if "place" in written and written & {"port", "serial_number", "emulator"}:
        c.problem(
            node,
            f"{label}.place",
            "a place's board is reached through its NetworkSerialPort: no 'port', 'serial_number' or 'emulator'",
        )
    if "place" in written and "firmware" in merged:
        c.problem(node, f"{label}.firmware", "flashing a board on a labgrid place is not supported yet")
    if "firmware" in merged and not merged.get("emulator") and "flash" not in merged and "place" not in written:
        c.problem(node, f"{label}.flash", "missing; a board with 'firmware' needs a 'flash' command (or 'emulator')")
    if len(c.problems) > before:
        return name, None
    if "firmware" in merged:
        fw = dict(merged["firmware"])
        fw["image"] = (base / fw["image"]).resolve()
        if "fallback" in fw:
            fw["fallback"] = (base / fw["fallback"]).resolve()
        merged["firmware"] = FirmwareSpec(**fw)
    if "deploy" in merged:
        merged["deploy"] = (base / merged["deploy"]).resolve()
    if merged.get("emulator") and "platform" not in merged:
        merged["platform"] = merged["emulator"]
    return name, BoardSpec(where=c.where(node), **merged)


def load_farm(path: str | os.PathLike[str]) -> Farm:
    path = Path(path)
    return parse_farm(_read_text(path), str(path), path.resolve().parent)


def _read_text(path: Path) -> str:
    """The farm file as text; only a regular file (a FIFO would block, a device never end)."""

    def refuse(message: str) -> FarmConfigError:
        return FarmConfigError([f"{path}: {message}"])

    def not_regular(mode: int) -> FarmConfigError:
        return refuse(f"not a regular file ({_file_kind(mode)}); give the path of a farm.yaml")

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # checked before opening: opening a tty can reset a board
            raise not_regular(mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO swapped in cannot block
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):  # replaced since the check
                raise not_regular(mode)
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read the farm inventory: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise refuse(f"larger than {MAX_FILE_BYTES // 1024} KiB; is this the farm inventory?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise FarmConfigError(
            [f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); save the file as UTF-8"]
        ) from None


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((label for test, label in kinds if test(mode)), "not a file")
