"""The board's file system, over the raw REPL.

Names and data are always sent as ``repr()`` of bytes (pure ASCII escapes) and
decoded on the board, so no user string is ever pasted into device code. Files
move in chunks, so a file may be far larger than the board's free heap, and
every write is verified by size and checksum (SHA-256 where the firmware has
``hashlib``, Adler-32 where it does not).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pytest_boardfarm import helper_sources

from . import literals
from .errors import BoardError, BoardRebooted, BoardTimeout, DeviceError, ProtocolError, UnsupportedOperation

Run = Callable[[str], str]  # runs device code, returns its stdout

CHUNK = 256  # most file bytes per exec: safe for a board with ~7 KB free heap
HELPERS = "bf_files.py"
_NO_SPACE = ("OSError: 28", "ENOSPC")
_COLLECT = "__import__('gc').collect()"
# After these the board sits at an idle raw prompt (an exec that times out or sees a
# reboot recovers first); after anything else it may still be running our code.
_BOARD_IDLE_AFTER = (DeviceError, BoardTimeout, BoardRebooted)
# Whatever state a failed put left (file open or not, helpers there or not, a reboot).
_ABANDON = """\
try:
 _bf_f.close()
except Exception:
 pass
try:
 __import__('os').remove({name})
except OSError:
 pass
[globals().pop(n,None) for n in ('_bf_f','_bf_w')]
"""


@dataclass(frozen=True, order=True)
class FileEntry:
    name: str
    size: int
    is_dir: bool = False


@dataclass
class DeployResult:
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Features:
    """What the board's firmware offers for file work."""

    stat: bool
    directories: bool
    hashlib: bool


def literal(text: str) -> str:
    """Device expression for ``text``: an escaped bytes literal decoded on the board."""
    return "str({},'utf-8')".format(literals.expression(text.encode("utf-8")))


def checksum(data: bytes, sha256: bool) -> str:
    """The host-side twin of ``_bf_sha``/``_bf_adler`` in firmware_helpers/bf_files.py."""
    if sha256:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    return f"adler32:{zlib.adler32(data)}"


def parse_value(text: str, what: str = "value") -> Any:
    """Parse a value the board printed with ``repr()``, without running it."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as exc:
        if _nesting(text.strip()) <= MAX_NESTING:
            raise BoardError(f"cannot parse the {what} the board printed: {text.strip()!r}") from exc
        # too deep: Python 3.10 parses e.g. '-' * 5000 + '1', then refuses it as malformed
    except (MemoryError, RecursionError):  # Python 3.11+'s parser gives up on it at once
        pass
    shown = f"{text.strip()[:60]!r}... ({len(text)} characters)"
    message = f"the board's answer to {what} is too deeply nested or too large to parse: {shown}"
    raise ProtocolError(message) from None


MAX_NESTING = 200  # about where CPython 3.11+'s own parser stops (its C stack limit)


def _nesting(text: str) -> int:
    """How deeply the expression's syntax tree nests (0 if it does not parse): counted
    without recursion, so a pathological answer cannot exhaust the stack here either."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return 0
    deepest = 0
    todo: list[tuple[ast.AST, int]] = [(tree, 0)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


class RemoteFiles:
    """File operations on one board; ``forget()`` after anything that clears its RAM.

    Each operation defines the ``_bf_*`` helpers it needs, and deletes them and
    collects when it ends, however it ends: a board with a few KB of heap keeps
    none of it for the test. Only the firmware's features are remembered.
    """

    def __init__(self, run: Run, statement_room: Callable[[], int], interrupt: Callable[[], None]) -> None:
        self._run = run
        self._room = statement_room  # see RawRepl.statement_room
        self._interrupt = interrupt  # back to an idle raw prompt from any state
        self._features: Features | None = None
        self._defined: list[str] = []  # helpers the operation under way has defined
        self._depth = 0  # operations under way (deploy runs put, put runs verify...)
        self._settled: BaseException | None = None  # the failure the board was last interrupted for

    def forget(self) -> None:
        self._features = None
        self._defined.clear()

    @property
    def features(self) -> Features:
        if self._features is None:
            with self._using("_bf_feat"):
                stat, directories, sha = parse_value(self._run("_bf_feat()"), "file features")
            self._features = Features(bool(stat), bool(directories), bool(sha))
        return self._features

    @contextlib.contextmanager
    def _using(self, *helpers: str) -> Iterator[None]:
        """Define ``helpers`` for one operation; when the outermost ends, delete them and collect."""
        self._depth += 1
        try:
            for name, block in helper_sources.needed(HELPERS, *helpers).items():
                if name not in self._defined:
                    self._define(block)
                    self._defined.append(name)
            yield
        except BaseException as exc:
            if self._depth == 1:
                with contextlib.suppress(BoardError):  # the board may be gone: keep the first error
                    self._settle(exc)
                    self._clean_up()
            raise
        else:
            if self._depth == 1:
                self._clean_up()
        finally:
            self._depth -= 1

    def _define(self, block: str) -> None:
        """Define one helper; a MemoryError gets one retry after a collection."""
        try:
            self._run(block)
        except BoardError as exc:
            if "MemoryError" not in str(exc):
                raise
            self._run(_COLLECT)
            self._run(block)

    def _clean_up(self) -> None:
        """Delete the helpers (those a reboot already took too) and collect the garbage."""
        names, self._defined[:] = tuple(self._defined), []
        self._run(f"[globals().pop(n,None) for n in {names!r}]\n{_COLLECT}" if names else _COLLECT)

    def path(self, path: str) -> str:
        """Normalise a board path; refuse ones that climb out of the root."""
        if "\x00" in path:
            raise ValueError(f"remote path {path!r} contains a NUL byte")
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"remote path {path!r} leaves the board's file system")
        if not self.features.directories:
            if len(parts) > 1:
                raise UnsupportedOperation(f"{path!r}: this board's file system is flat (no directories)")
            return parts[0] if parts else ""
        return "/" + "/".join(parts)

    # -- queries -------------------------------------------------------------

    def size(self, path: str) -> int:
        """Size in bytes; -1 when missing, -2 for a directory."""
        name = literal(self.path(path))
        with self._using("_bf_size"):
            return int(parse_value(self._run(f"print(_bf_size({name}))"), "file size"))

    def exists(self, path: str) -> bool:
        if not self.path(path).strip("/"):
            return True
        return self.size(path) != -1

    def ls(self, path: str = "/") -> list[FileEntry]:
        where = literal(self.path(path) or "/")
        with self._using("_bf_ls"):
            out = self._run(f"_bf_ls({where})")  # one entry a line, printed as the board finds it
        entries = (parse_value(line, "directory entry") for line in out.splitlines() if line.strip())
        return sorted(FileEntry(str(n), int(s), bool(d)) for n, d, s in entries)

    # -- changes -------------------------------------------------------------

    def remove(self, path: str) -> None:
        self._run(f"__import__('os').remove({literal(self.path(path))})")

    def mkdir(self, path: str) -> None:
        if not self.features.directories:
            raise UnsupportedOperation(f"cannot create {path!r}: this board's file system is flat")
        self._run(f"__import__('os').mkdir({literal(self.path(path))})")

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents where missing."""
        parts = PurePosixPath(self.path(path)).parts[1:]
        with self._using("_bf_size"):
            for depth in range(1, len(parts) + 1):
                sub = "/" + "/".join(parts[:depth])
                size = self.size(sub)
                if size == -1:
                    self.mkdir(sub)
                elif size != -2:
                    raise BoardError(f"cannot create directory {sub!r}: a file of that name exists")

    def get(self, path: str) -> bytes:
        name = literal(self.path(path))
        with self._using("_bf_read"):
            out = self._run(f"_bf_read({name})")
        return b"".join(_chunks_printed(out))

    def put(self, data: bytes, path: str) -> None:
        """Write ``data`` to ``path`` in chunks, then check size and checksum.

        A put that fails for any reason, even an interrupt here, removes what it
        wrote wherever the board still answers.
        """
        name = literal(self.path(path))
        written = 0
        room = min(self._room(), 4 * CHUNK + 3) - len("_bf_w()")
        try:
            self._run(f"_bf_f=open({name},'wb')")
            self._run("_bf_w=_bf_f.write")
            # Each write fits one unstaged exec, its literal never interned: a calm heap.
            for piece in literals.pieces(data, room):
                self._run(f"_bf_w({literals.expression(piece)})")
                written += len(piece)
            self._run("_bf_f.close()\ndel _bf_f,_bf_w")
            self.verify(data, path)
        except BaseException as exc:
            self._abandon(name, exc)
            if isinstance(exc, DeviceError) and any(marker in exc.traceback for marker in _NO_SPACE):
                raise DeviceError(
                    f"{exc.traceback.rstrip()}\n(no space left on the board's file system: "
                    f"{written} of {len(data)} bytes of {path!r} written; the partial file was removed)",
                    board=exc.board,
                ) from exc
            raise

    def _abandon(self, name: str, exc: BaseException) -> None:
        """Close and remove a partial file; first interrupt the board if it may be busy."""
        with contextlib.suppress(BoardError):  # the board may be gone: keep the first error
            self._settle(exc)
            self._run(_ABANDON.format(name=name))

    def _settle(self, exc: BaseException) -> None:
        """After ``exc``, get the board back to an idle raw prompt unless it is known to be there."""
        if not isinstance(exc, _BOARD_IDLE_AFTER) and exc is not self._settled:
            self._settled = exc  # once per failure, however many layers see it
            self._interrupt()

    def verify(self, data: bytes, path: str) -> None:
        if not self.matches(data, path):
            raise BoardError(f"verification failed: {path!r} on the board differs from what was sent")

    def matches(self, data: bytes, path: str) -> bool:
        """True when the board's file has exactly these bytes (size, then checksum)."""
        name = literal(self.path(path))
        summer = self._summer
        with self._using("_bf_state", summer):
            size, digest = parse_value(self._run(f"_bf_state({name},{len(data)},{summer})"), "file state")
        return bool(size == len(data) and digest == checksum(data, self.features.hashlib))

    @property
    def _summer(self) -> str:
        """The board's checksum helper: only the one its firmware can run is sent."""
        return "_bf_sha" if self.features.hashlib else "_bf_adler"

    def deploy(self, local_dir: Path, remote_dir: str = "/") -> DeployResult:
        """Copy a tree; files already identical on the board are skipped.

        The whole tree is checked first (no link out of it, every board path one
        this board can hold), so a tree that is refused leaves nothing copied.
        """
        result = DeployResult()
        root = Path(local_dir).resolve()
        if not root.is_dir():
            raise BoardError(f"deploy: {local_dir} is not a directory")
        plan = [(local, rel, f"{remote_dir.rstrip('/')}/{rel}") for local, rel in _tree(root)]
        for _, _, remote in plan:
            self.path(remote)  # refuses a path this board cannot hold, before anything is copied
        for local, rel, remote in plan:
            data = local.read_bytes()
            with self._using("_bf_state", self._summer):  # defined once for the whole tree
                if self.matches(data, remote):
                    result.skipped.append(rel)
                    continue
                parent = PurePosixPath(self.path(remote)).parent
                if self.features.directories and str(parent) != "/":
                    self.makedirs(str(parent))
                self.put(data, remote)
            result.copied.append(rel)
        return result


def _tree(root: Path) -> list[tuple[Path, str]]:
    """Files below ``root`` (hidden files and __pycache__ left out); a link, to a file or a
    directory, that leads outside ``root`` refuses the whole tree."""
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if not path.resolve().is_relative_to(root):
            raise BoardError(f"deploy: {path} points outside {root}; nothing was copied")
        if path.is_file():
            files.append((path, rel.as_posix()))
    return files


def _chunks_printed(out: str) -> Iterator[bytes]:
    for line in out.splitlines():
        if line.strip():
            value = parse_value(line, "file chunk")
            if not isinstance(value, bytes):
                raise BoardError(f"expected a bytes chunk, got {line!r}")
            yield value
