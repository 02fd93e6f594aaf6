"""The farm inventory: ``farm.yaml`` read, validated and turned into plain data.

Every problem is reported at once, each with file, line and key, because a
person fixing a farm file wants the whole list, not one error per run.
"""

from __future__ import annotations

import difflib
import os
import shlex
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EMULATORS = ("microbit",)
ENV_VAR = "BOARDFARM_INVENTORY"


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
    rts_reset: bool = False  # hard reset by pulsing RTS (wired to EN/RESET on most dev boards)
    dtr: bool = True  # the modem lines while the port is open: asserted, as mpremote holds them
    rts: bool = True
    deploy: Path | None = None
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
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"no board named {name!r} in the farm{hint}; the farm has: {', '.join(known) or 'no boards'}")

    def __str__(self) -> str:
        return str(self.args[0])


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "pytest-boardfarm-locks"


# -- validation ------------------------------------------------------------------

Node = yaml.Node


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
        if kind is str and not isinstance(value, str):
            self.problem(node, key, f"expected {label}, got {type(value).__name__} {value!r}")
            return None
        try:
            return kind(value)
        except (TypeError, ValueError):
            self.problem(node, key, f"expected {label}, got {value!r}")
            return None


def _scalar_value(node: Node) -> Any:
    """A scalar node's value, as YAML's safe loader types it (int, float, bool, str...)."""
    return yaml.safe_load(yaml.serialize(node))


def _kind(node: Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag.endswith(":null"):
        return "nothing"
    return f"{_scalar_value(node)!r}"


def _positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        number = kind(value)
        if number <= 0:
            raise ValueError(value)
        return number

    return convert


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


def _command(c: _Checker, node: Node, key: str) -> tuple[str, ...] | None:
    """A command template: a string split like a shell would, or a list of arguments."""
    if isinstance(node, yaml.SequenceNode):
        return _str_list(c, node, key)
    text = c.scalar(node, key, str, "a command (string or list of arguments)")
    if text is None:
        return None
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        c.problem(node, key, f"cannot split command: {exc}")
        return None
    if not argv:
        c.problem(node, key, "empty command")
        return None
    return argv


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
        c.problem(node, key, f"unknown emulator {value!r}; known: {', '.join(EMULATORS)}")
        return None
    return value


# key -> converter(checker, node, key) -> value or None (problem recorded)
_BOARD_KEYS: dict[str, Callable[[_Checker, Node, str], Any]] = {
    "name": lambda c, n, k: c.scalar(n, k, str, "a string"),
    "port": lambda c, n, k: c.scalar(n, k, str, "a port or pyserial URL"),
    "emulator": _emulator,
    "serial_number": lambda c, n, k: c.scalar(n, k, str, "a string"),
    "platform": lambda c, n, k: c.scalar(n, k, str, "a string"),
    "tags": _str_list,
    "baudrate": lambda c, n, k: c.scalar(n, k, _positive(int), "a positive whole number"),
    "timeout": lambda c, n, k: c.scalar(n, k, _positive(float), "a positive number of seconds"),
    "reset": _command,
    "flash": _command,
    "rts_reset": lambda c, n, k: c.scalar(n, k, _boolean, "true or false"),
    "dtr": lambda c, n, k: c.scalar(n, k, _boolean, "true or false"),
    "rts": lambda c, n, k: c.scalar(n, k, _boolean, "true or false"),
    "deploy": lambda c, n, k: c.scalar(n, k, str, "a directory path"),
    "write_window": lambda c, n, k: c.scalar(n, k, _positive(int), "a positive whole number of bytes"),
    "properties": _properties,
}
_TOP_KEYS = ("boards", "defaults", "locks")
_LOCK_KEYS = ("dir",)


def _unknown(c: _Checker, node: Node, key: str, known: Iterable[str]) -> None:
    close = difflib.get_close_matches(key.split(".")[-1], list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    c.problem(node, key, f"unknown key{hint}")


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
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise FarmConfigError([f"{filename}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if root is None:
        raise FarmConfigError([f"{filename}: the file is empty; it needs a 'boards:' list"])
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
        for key in ("name", "port", "serial_number"):
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
            for index, node in enumerate(boards_node.value):
                name, spec = _board(c, node, f"boards[{index}]", defaults, base)
                if name is not None and name in seen:
                    c.problem(node, f"boards[{index}].name", f"duplicate board name {name!r} (first at {seen[name]})")
                    continue
                if name is not None:
                    seen[name] = c.where(node)
                if spec is not None:
                    boards.append(spec)
    if c.problems:
        raise FarmConfigError(sorted(c.problems, key=_line_of))
    return Farm(tuple(boards), lock_dir, Path(filename))


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
    if not written & {"port", "emulator", "serial_number"}:
        c.problem(
            node, f"{label}.port", "missing; give 'port' (a device or pyserial URL), 'serial_number' or 'emulator'"
        )
    if "emulator" in written and written & {"port", "serial_number"}:
        c.problem(node, f"{label}.emulator", "an emulated board has no 'port' or 'serial_number'")
    if len(c.problems) > before:
        return name, None
    if "deploy" in merged:
        merged["deploy"] = (base / merged["deploy"]).resolve()
    if merged.get("emulator") and "platform" not in merged:
        merged["platform"] = merged["emulator"]
    return name, BoardSpec(where=c.where(node), **merged)


def load_farm(path: str | os.PathLike[str]) -> Farm:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FarmConfigError([f"{path}: cannot read the farm inventory: {exc.strerror or exc}"]) from None
    return parse_farm(text, str(path), path.resolve().parent)
