"""Which boards a test runs on: the farm, narrowed by the command line and the marker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .inventory import BoardSpec, Farm, did_you_mean, seconds, seconds_rule, short_repr


@dataclass(frozen=True)
class Filters:
    """What ``@pytest.mark.board(...)`` or the command line asks for."""

    names: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @classmethod
    def from_marker(cls, kwargs: Mapping[str, Any]) -> Filters:
        return cls(_strings(kwargs.get("name")), _strings(kwargs.get("platform")), _strings(kwargs.get("tags")))

    def describe(self) -> str:
        parts = []
        if self.names:
            parts.append(f"name={_one_or_list(self.names)}")
        if self.platforms:
            parts.append(f"platform={_one_or_list(self.platforms)}")
        if self.tags:
            parts.append(f"tags={list(self.tags)}")
        return ", ".join(parts) or "any board"

    def apply(self, boards: Iterable[BoardSpec]) -> list[BoardSpec]:
        return [b for b in boards if b.matches(names=self.names, platforms=self.platforms, tags=self.tags)]


MARKER_KEYS = ("name", "platform", "tags", "timeout", "test_timeout")


def marker_problems(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``@pytest.mark.board(...)``: a typo must not run a test everywhere."""
    known = ", ".join(MARKER_KEYS)
    problems = [f"positional argument {short_repr(arg)} not allowed; use name=, platform=, tags=" for arg in args]
    for key, value in kwargs.items():
        if key not in MARKER_KEYS:
            problems.append(f"unknown argument {key!r}{did_you_mean(key, MARKER_KEYS)}; known: {known}")
        elif key in ("timeout", "test_timeout"):
            zero_ok = key == "test_timeout"  # 0: no wall-clock limit for this test
            if value is not None and not _is_seconds(value, zero_ok=zero_ok):
                problems.append(f"{key}={short_repr(value)}: expected {seconds_rule(zero_ok=zero_ok)}")
        elif not (value is None or isinstance(value, str) or _is_str_list(value)):
            problems.append(f"{key}={short_repr(value)}: expected a string or a list of strings")
    return problems


def _is_seconds(value: Any, *, zero_ok: bool = False) -> bool:
    """A number (not text: the marker is Python) of seconds that ``seconds`` accepts."""
    if isinstance(value, str):
        return False
    try:
        seconds(value, zero_ok=zero_ok)
    except ValueError:
        return False
    return True


def _is_str_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _one_or_list(values: Sequence[str]) -> str:
    return repr(values[0]) if len(values) == 1 else repr(list(values))


def selected_boards(farm: Farm, command_line: Filters) -> list[BoardSpec]:
    """The boards this run may use at all (unknown names are caught earlier)."""
    return command_line.apply(farm.boards)


def no_match_reason(farm: Farm, command_line: Filters, marker: Filters) -> str:
    available = ", ".join(b.describe() for b in selected_boards(farm, command_line)) or "no boards"
    narrowed = "" if command_line == Filters() else f" after the command line's {command_line.describe()}"
    return f"no board matches {marker.describe()}; the farm has{narrowed}: {available}"


def command_line_problem(farm: Farm, command_line: Filters) -> str | None:
    """``--board-tag`` (or ``--board`` with it) selecting no board at all is a usage error:
    a typo must not turn a hardware run into a run of skips."""
    if command_line == Filters() or selected_boards(farm, command_line):
        return None
    tags = sorted({tag for board in farm.boards for tag in board.tags})
    known = ", ".join(tags) if tags else "none"
    return f"no board in the farm matches the command line's {command_line.describe()} (tags in the farm: {known})"
