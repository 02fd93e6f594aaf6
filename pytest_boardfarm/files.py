"""The board's file system, over the raw REPL.

Names and data are always sent as ``repr()`` of bytes (pure ASCII escapes) and
decoded on the board, so no user string is ever pasted into device code. Files
move in chunks, so a file may be far larger than the board's free heap, and
every write is verified by size and checksum (SHA-256 where the firmware has
``hashlib``, Adler-32 where it does not).
"""

from __future__ import annotations

import ast
import hashlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import firmware_helpers

from . import literals
from .errors import BoardError, DeviceError, ProtocolError, UnsupportedOperation

Run = Callable[[str], str]  # runs device code, returns its stdout

CHUNK = 256  # most file bytes per exec: safe for a board with ~7 KB free heap
_NO_SPACE = ("OSError: 28", "ENOSPC")


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
    return "str({!r},'utf-8')".format(text.encode("utf-8"))


def checksum(data: bytes, sha256: bool) -> str:
    """The host-side twin of ``_bf_sum`` in firmware_helpers/bf_files.py."""
    if sha256:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    return f"adler32:{zlib.adler32(data)}"


def parse_value(text: str, what: str = "value") -> Any:
    """Parse a value the board printed with ``repr()``, without running it."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as exc:
        raise BoardError(f"cannot parse the {what} the board printed: {text.strip()!r}") from exc
    except (MemoryError, RecursionError):  # Python's parser gives up on e.g. '-' * 5000 + '1'
        shown = f"{text.strip()[:60]!r}... ({len(text)} characters)"
        message = f"the board's answer to {what} is too deeply nested or too large to parse: {shown}"
        raise ProtocolError(message) from None


class RemoteFiles:
    """File operations on one board; ``forget()`` after anything that clears its RAM."""

    def __init__(self, run: Run, statement_room: Callable[[], int]) -> None:
        self._run = run
        self._room = statement_room  # see RawRepl.statement_room
        self._features: Features | None = None

    def forget(self) -> None:
        self._features = None

    @property
    def features(self) -> Features:
        if self._features is None:
            if not self._eval("'_bf_feat' in globals()"):
                self._load_helpers()
            stat, directories, sha = self._eval("_bf_feat()")
            self._features = Features(bool(stat), bool(directories), bool(sha))
        return self._features

    def _load_helpers(self) -> None:
        """Define the ``_bf_*`` helpers on the board, one function at a time.

        Each reload leaves the old functions scattered on a small heap; a
        MemoryError gets one retry after a collection.
        """
        for block in firmware_helpers.blocks("bf_files.py"):
            try:
                self._run(block)
            except BoardError as exc:
                if "MemoryError" not in str(exc):
                    raise
                self._run("import gc\ngc.collect()")
                self._run(block)

    def _eval(self, expr: str) -> Any:
        return parse_value(self._run(f"print(repr({expr}))"), expr)

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
        return int(self._eval(f"_bf_size({literal(self.path(path))})"))

    def exists(self, path: str) -> bool:
        if not self.path(path).strip("/"):
            return True
        return self.size(path) != -1

    def ls(self, path: str = "/") -> list[FileEntry]:
        where = self.path(path) or "/"
        entries = self._eval(f"_bf_ls({literal(where)})")
        return sorted(FileEntry(str(n), int(s), bool(d)) for n, d, s in entries)

    # -- changes -------------------------------------------------------------

    def remove(self, path: str) -> None:
        self._run(f"os.remove({literal(self.path(path))})")

    def mkdir(self, path: str) -> None:
        if not self.features.directories:
            raise UnsupportedOperation(f"cannot create {path!r}: this board's file system is flat")
        self._run(f"os.mkdir({literal(self.path(path))})")

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents where missing."""
        parts = PurePosixPath(self.path(path)).parts[1:]
        for depth in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:depth])
            size = self.size(sub)
            if size == -1:
                self.mkdir(sub)
            elif size != -2:
                raise BoardError(f"cannot create directory {sub!r}: a file of that name exists")

    def get(self, path: str) -> bytes:
        out = self._run(f"_bf_read({literal(self.path(path))})")
        return b"".join(_chunks_printed(out))

    def put(self, data: bytes, path: str) -> None:
        """Write ``data`` to ``path`` in chunks, then check size and checksum."""
        name = literal(self.path(path))
        self._run(f"_bf_f=open({name},'wb');_bf_w=_bf_f.write")
        written = 0
        room = min(self._room(), 4 * CHUNK + 3) - len("_bf_w()")
        try:
            # Each write fits one unstaged exec: small allocations, a calm heap.
            for piece in literals.pieces(data, room):
                self._run(f"_bf_w({piece!r})")
                written += len(piece)
            self._run("_bf_f.close()")
        except DeviceError as exc:
            self._abandon(name)
            if any(marker in exc.traceback for marker in _NO_SPACE):
                raise DeviceError(
                    f"{exc.traceback.rstrip()}\n(no space left on the board's file system: "
                    f"{written} of {len(data)} bytes of {path!r} written; the partial file was removed)",
                    board=exc.board,
                ) from exc
            raise
        self.verify(data, path)

    def _abandon(self, name: str) -> None:
        self._run(f"try:\n _bf_f.close()\nexcept Exception:\n pass\ntry:\n os.remove({name})\nexcept OSError:\n pass")

    def verify(self, data: bytes, path: str) -> None:
        if not self.matches(data, path):
            raise BoardError(f"verification failed: {path!r} on the board differs from what was sent")

    def matches(self, data: bytes, path: str) -> bool:
        """True when the board's file has exactly these bytes (size, then checksum)."""
        size, digest = self._eval(f"_bf_state({literal(self.path(path))},{len(data)})")
        return bool(size == len(data) and digest == checksum(data, self.features.hashlib))

    def deploy(self, local_dir: Path, remote_dir: str = "/") -> DeployResult:
        """Copy a tree; files already identical on the board are skipped."""
        result = DeployResult()
        root = Path(local_dir).resolve()
        if not root.is_dir():
            raise BoardError(f"deploy: {local_dir} is not a directory")
        for local, rel in _tree(root):
            remote = f"{remote_dir.rstrip('/')}/{rel}"
            data = local.read_bytes()
            if self.matches(data, remote):
                result.skipped.append(rel)
                continue
            parent = PurePosixPath(self.path(remote)).parent
            if self.features.directories and str(parent) != "/":
                self.makedirs(str(parent))
            self.put(data, remote)
            result.copied.append(rel)
        return result


def _tree(root: Path) -> Iterator[tuple[Path, str]]:
    """Files below ``root`` (hidden files and __pycache__ left out), never outside it."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            raise BoardError(f"deploy: {path} points outside {root}")
        yield path, rel.as_posix()


def _chunks_printed(out: str) -> Iterator[bytes]:
    for line in out.splitlines():
        if line.strip():
            value = parse_value(line, "file chunk")
            if not isinstance(value, bytes):
                raise BoardError(f"expected a bytes chunk, got {line!r}")
            yield value
