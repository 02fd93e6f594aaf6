"""Farm commands (hard reset, flash): argument templates, never a shell.

farm.yaml gives a command as a string split like a shell would, or as a list.
Each argument is filled in on its own (``{port}`` -> the port), so a value
with spaces or quotes stays one argument and can never become a new command.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from string import Formatter

from .errors import BoardError

FIELDS = ("name", "port", "serial_number", "platform")  # what a reset command may use
FLASH_FIELDS = (*FIELDS, "image")  # a flash command also gets the firmware image's path


class CommandError(BoardError):
    """A farm command could not be filled in, started, or did not succeed in time."""


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    output: str


def template_problems(template: Sequence[str], known: Iterable[str]) -> list[str]:
    """What is wrong with a command template (nothing: it is fine).

    Only plain ``{field}`` names are allowed: no attributes, indexes, conversions
    or format specs (``{port.__class__}``, ``{port[0]}``, ``{port!r}``), so filling
    in a template can never reach anything but the value itself.
    """
    known = list(known)
    problems = []
    for arg in template:
        try:
            parsed = list(Formatter().parse(arg))
        except ValueError as exc:
            problems.append(f"argument {arg!r}: {exc} (write {{{{ or }}}} for a literal brace)")
            continue
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if name in known and not spec and conversion is None:
                continue
            text = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if name in known:
                problems.append(f"{text}: only a plain {{{name}}} is allowed (no conversion or format spec)")
            else:
                problems.append(f"unknown field {text}; known: {', '.join('{' + k + '}' for k in known)}")
    return problems


def render(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Fill each argument's ``{field}``s; unknown fields are an error, not a guess."""
    problems = template_problems(template, values)
    if problems:
        raise CommandError(f"{'; '.join(problems)} (in command {list(template)})")
    return [arg.format_map(values) for arg in template]


def run(template: Sequence[str], values: Mapping[str, str], timeout: float) -> CommandResult:
    argv = render(template, values)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise CommandError(f"command not found: {argv[0]}") from None
    except OSError as exc:  # not executable, a directory, too many processes...
        raise CommandError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{argv} did not finish within {timeout:g}s") from exc
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise CommandError(f"{argv} exited with {done.returncode}: {output[-500:]}")
    return CommandResult(argv, done.returncode, output)
