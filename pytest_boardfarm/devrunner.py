"""Running device tests on one board: what is sent when, and what comes back.

Per test module per board, once: the runner (``firmware_helpers/bf_devtest.py``),
the module's top-level code, its ``setup()``, then a token in ``_bf_k`` saying
"this module is loaded". Per test: a one-line check of that token (a reboot or
a reset in between loads the module again), the test function's own source,
and a call of ``_bf_t(name)`` that runs it and drops it. Only one test function
is ever on the board's heap, so a module of any length fits a micro:bit.

Failures come back as :class:`DeviceTestFailure` with the board's traceback in
the user's file and line numbers, the failing source lines, and the values of
a failed ``assert a == b``; a ``SkipTest`` raised on the board comes back as
:class:`DeviceTestSkipped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import helper_sources
from .board import Board
from .devassert import Rewritten
from .devmodule import Chunk, DeviceSource, failed_line
from .errors import BoardError, BoardRebooted, BoardTimeout, DeviceError

RUNNER = "bf_devtest.py"
SKIP = "SkipTest"
OUTPUT_SKIP = "SKIP"  # MicroPython's run-tests.py: a test that prints only this was skipped


class DeviceTestFailure(Exception):
    """A device test failed; the text says how, in the user's terms; ``line``: where in the user's file."""

    def __init__(self, text: str, line: int | None = None) -> None:
        super().__init__(text)
        self.line = line


class DeviceTestSkipped(DeviceTestFailure):
    """The board skipped the test (``raise SkipTest(reason)``, or an output test printed SKIP)."""


@dataclass
class ModuleState:
    """What the host remembers of one device module across its tests, per board."""

    token: str
    skipped: dict[str, str] = field(default_factory=dict)  # board -> why its module code skipped


@dataclass
class ModuleRunner:
    """One device test module on one board."""

    board: Board
    source: DeviceSource
    state: ModuleState

    def load(self) -> None:
        """Make sure the runner and the module's top-level code are on the board (after a
        reset or a reboot they are gone, and come back), and ``setup()`` ran."""
        board = self.board
        if board.name in self.state.skipped:
            raise DeviceTestSkipped(self.state.skipped[board.name])
        if board.eval("globals().get('_bf_k')") == self.state.token:
            return
        for block in helper_sources.blocks(RUNNER):
            board.exec(block)
        for chunk in self.source.prelude:
            self._run(chunk.source, chunk, "the module's top-level code", keep_module_frame=True)
        if "setup" in self.source.defines:
            self._run("setup()", None, "setup()")
        board.exec(f"_bf_k={self.state.token!r}")

    def run(self, name: str) -> None:
        """Define test function ``name`` on the board and run it."""
        chunk = self.source.tests[name]
        self._run(chunk.source, chunk, name, keep_module_frame=True)
        self._run(f"_bf_t({name!r})", chunk, name)

    def finish(self) -> None:
        """After the module's last test on this board: ``teardown()``, and the module counts as unloaded."""
        if self.board.eval("globals().get('_bf_k')") != self.state.token:
            return  # never loaded, or lost in a reboot: its teardown() has nothing to undo
        self.board.exec("_bf_k=None")
        if "teardown" in self.source.defines:
            self._run("teardown()", None, "teardown()")

    def _run(self, code: str, chunk: Chunk | None, what: str, *, keep_module_frame: bool = False) -> None:
        try:
            self.board.exec(code)
        except DeviceError as exc:
            traceback = self.source.traceback(exc.traceback, chunk, keep_module_frame=keep_module_frame)
            line = failed_line(traceback, self.source.path)
            if exc.exc_name == SKIP:
                reason = _skip_reason(exc.traceback)
                if chunk is not None and chunk not in self.source.tests.values():
                    self.state.skipped[self.board.name] = reason  # module code skipped: every test skips
                raise DeviceTestSkipped(reason, line) from None
            raise DeviceTestFailure(self._describe(exc, traceback, line), line) from None
        except (BoardTimeout, BoardRebooted) as exc:
            raise DeviceTestFailure(_cut_short(self.board, what, exc)) from None

    def _describe(self, exc: DeviceError, traceback: str, line: int | None) -> str:
        explanation = None
        if exc.exc_name == "AssertionError":
            try:
                record = self.board.eval("_bf_e")
            except BoardError:  # the board cannot say (out of memory): the traceback still stands
                record = None
            explanation = self.source.rewritten.explain(record, line)
        return describe_failure(self.board.name, traceback, self.source.path, _source_lines(self.source), explanation)


def describe_failure(board: str, traceback: str, path: str, lines: list[str], explanation: str | None = None) -> str:
    """First line: the exception (pytest's short summary); then the board's traceback with
    the user's source under each of the file's frames, as CPython shows it."""
    out = []
    for line in traceback.rstrip("\n").splitlines():
        out.append(line)
        number = _frame_line(line, path)
        if number is not None and 0 < number <= len(lines) and lines[number - 1].strip():
            out.append("    " + lines[number - 1].strip())
    last = out[-1] if out else "failed"
    if explanation:
        if last.rstrip(" :") == "AssertionError":
            last = f"AssertionError: {explanation}"
            out[-1] = last
        else:
            out.append(explanation)
            last = explanation
    return f"{last}\n\ntraceback on {board}:\n" + "\n".join(out)


def _frame_line(line: str, path: str) -> int | None:
    head = f'File "{path}", line '
    text = line.strip()
    if not text.startswith(head):
        return None
    digits = text[len(head) :].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None


def _source_lines(source: DeviceSource) -> list[str]:
    return source.rewritten.original.splitlines()


def _skip_reason(traceback: str) -> str:
    last = traceback.strip().splitlines()[-1] if traceback.strip() else SKIP
    reason = last.split(":", 1)[1].strip() if ":" in last else ""
    return reason or "skipped on the board"


def _cut_short(board: Board, what: str, exc: BoardError) -> str:
    if isinstance(exc, BoardTimeout):
        return f"{what} did not finish within {board.timeout:g}s on {board.name}\n{exc}"
    return (
        f"the board {board.name} rebooted during {what} (machine.reset(), a crash, a watchdog); "
        f"its RAM was cleared, the module is loaded again for the next test\n{exc}"
    )


@dataclass(frozen=True)
class OutputTest:
    """MicroPython's run-tests convention: ``foo.py`` runs whole; its output must equal ``foo.py.exp``."""

    path: str  # as reports show it
    source: str
    expected: str

    @classmethod
    def read(cls, path: Path, shown: str) -> OutputTest:
        expected = Path(f"{path}.exp").read_text(encoding="utf-8").replace("\r\n", "\n")
        return cls(shown, path.read_text(encoding="utf-8"), expected)

    def run(self, board: Board) -> None:
        whole = DeviceSource(self.path, Rewritten(self.source, self.source))  # runs as written, like run-tests.py
        module = Chunk(1, len(self.source.splitlines()), self.source, frozenset())
        try:
            output = board.exec(self.source)
        except DeviceError as exc:
            if exc.exc_name == SKIP or _printed_skip(exc.stdout):
                raise DeviceTestSkipped(_skip_reason(exc.traceback)) from None
            traceback = whole.traceback(exc.traceback, module, keep_module_frame=True)
            text = describe_failure(board.name, traceback, self.path, self.source.splitlines())
            line = failed_line(traceback, self.path)
            raise DeviceTestFailure(f"{text}\n\n{self._diff(exc.stdout, board.name)}".rstrip(), line) from None
        except BoardRebooted as exc:  # `print("SKIP"); raise SystemExit` soft-reboots current firmware
            if _printed_skip(_before_reboot(exc.output)):
                raise DeviceTestSkipped("the test printed SKIP") from None
            raise DeviceTestFailure(_cut_short(board, self.path, exc)) from None
        except BoardTimeout as exc:
            raise DeviceTestFailure(_cut_short(board, self.path, exc)) from None
        if _printed_skip(output):
            raise DeviceTestSkipped("the test printed SKIP")
        if output != self.expected:
            raise DeviceTestFailure(f"output differs from {self.path}.exp\n\n{self._diff(output, board.name)}")

    def _diff(self, output: str, board: str) -> str:
        import difflib  # a failed output test only

        lines = difflib.unified_diff(
            self.expected.splitlines(keepends=True),
            output.splitlines(keepends=True),
            fromfile=f"{self.path}.exp",
            tofile=f"output on {board}",
        )
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _before_reboot(output: bytes) -> str:
    """What a program printed before it ended in a soft reboot (``MPY: soft reboot`` and on)."""
    text = output.decode("utf-8", "replace").replace("\r\n", "\n").replace("\x04", "")
    return text.split("soft reboot", 1)[0].rsplit("\n", 1)[0] + "\n"


def _printed_skip(output: str) -> bool:
    return output.startswith(OUTPUT_SKIP) and output.strip() == OUTPUT_SKIP
