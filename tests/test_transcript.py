"""The transcript keeps a bounded tail, per-test slices stay right, a flood cannot fill the host."""

from __future__ import annotations

import time

import pytest

from pytest_boardfarm import Board
from pytest_boardfarm.deadline import Deadline
from pytest_boardfarm.errors import BoardTimeout
from pytest_boardfarm.rawrepl import PENDING_LIMIT, RawRepl
from pytest_boardfarm.transcript import Transcript

KIB = 1024


def flood(transcript: Transcript, total: int, chunk: int = 4 * KIB) -> int:
    """Append ``total`` bytes of numbered lines; return the most bytes the transcript held."""
    most = 0
    sent = 0
    while sent < total:
        line = f"spam {sent}\n".encode().ljust(chunk, b".")
        transcript.append(line)
        sent += len(line)
        most = max(most, transcript.mark() - transcript.dropped_since(0))  # bytes held, without a copy
    return most


def test_a_flood_is_bounded() -> None:
    transcript = Transcript(limit=256 * KIB)
    before = transcript.mark()
    most = flood(transcript, 64 * 1024 * KIB)  # 64 MiB through a 256 KiB transcript
    assert most <= 2 * 256 * KIB
    assert transcript.mark() - before == 64 * 1024 * KIB  # marks still count every byte
    assert transcript.dropped_since(before) > 0
    assert transcript.since(before) == transcript.data  # what remains
    assert transcript.text(before).startswith(f"[... {transcript.dropped_since(before)} bytes dropped ...]\n")


def test_recent_slices_are_exact_after_a_flood() -> None:
    transcript = Transcript(limit=64 * KIB)
    flood(transcript, 10 * 1024 * KIB)
    mark = transcript.mark()
    transcript.append(b"the test's own output\r\n")
    assert transcript.since(mark) == b"the test's own output\r\n"
    assert transcript.dropped_since(mark) == 0
    assert transcript.text(mark) == "the test's own output\n"  # no marker: nothing of it was dropped


def test_a_slice_that_outgrows_the_limit_keeps_its_tail() -> None:
    transcript = Transcript(limit=64 * KIB)
    transcript.append(b"before the test\n")
    mark = transcript.mark()
    flood(transcript, 1024 * KIB)
    transcript.append(b"last words\n")
    kept = transcript.since(mark)
    assert kept.endswith(b"last words\n") and len(kept) >= 64 * KIB
    assert transcript.dropped_since(mark) + len(kept) == transcript.mark() - mark
    assert b"before the test" not in kept


def test_small_transcripts_keep_everything() -> None:
    transcript = Transcript()
    transcript.append(b"a")
    mark = transcript.mark()
    transcript.append(b"b")
    assert transcript.data == b"ab" and transcript.since(mark) == b"b" and transcript.dropped_since(0) == 0


class FloodingPeer:
    """A TCP peer that sends ``total`` bytes of junk as fast as it is read, then nothing."""

    def __init__(self, total: int, chunk: int = 1024 * KIB) -> None:
        self.left = total
        self.chunk = b"spam spam spam\r\n" * (chunk // 16)
        self.repl: RawRepl | None = None
        self.most_pending = 0  # the most bytes the raw REPL layer held while reading

    def write(self, data: bytes) -> None:
        pass

    def read(self, timeout: float) -> bytes:
        if self.repl is not None:
            self.most_pending = max(self.most_pending, len(self.repl._buf))
        if self.left <= 0:
            time.sleep(min(timeout, 0.01))
            return b""
        self.left -= len(self.chunk)
        return self.chunk


def test_a_flooding_peer_cannot_fill_the_host_memory() -> None:
    peer = FloodingPeer(total=96 * 1024 * KIB)
    transcript = Transcript(limit=1024 * KIB)
    repl = peer.repl = RawRepl(peer, transcript)
    start = time.monotonic()
    with pytest.raises(BoardTimeout):
        repl.enter(Deadline(2))
    assert time.monotonic() - start < 10
    assert peer.most_pending <= PENDING_LIMIT + len(peer.chunk)
    assert transcript.mark() - transcript.dropped_since(0) <= 2 * 1024 * KIB
    assert transcript.text(0).startswith("[... ")


def test_a_flooding_board_keeps_the_test_its_tail(mb: Board) -> None:
    mb.transcript.limit = 4 * KIB
    mark = mb.transcript.mark()
    with pytest.raises(BoardTimeout):
        mb.exec("i = 0\nwhile True:\n    print('spam spam spam spam', i)\n    i += 1", timeout=1.0)
    assert mb.transcript.mark() - mark > 4 * 4 * KIB  # it did flood (~400 KB/s on an idle machine)
    assert mb.transcript.mark() - mb.transcript.dropped_since(0) <= 2 * 4 * KIB
    text = mb.transcript.text(mark)
    assert text.startswith("[... ") and "bytes dropped ...]\n" in text
    assert "spam spam spam spam" in text[-1000:] and "KeyboardInterrupt" in text[-1000:]  # the latest is there
    mark = mb.transcript.mark()
    assert mb.exec("print('after the flood')") == "after the flood\n"
    assert mb.transcript.text(mark) == "after the flood\n"
