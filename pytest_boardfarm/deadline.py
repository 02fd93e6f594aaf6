"""Deadlines: every wait on a device is bounded by one."""

from __future__ import annotations

import time


class Deadline:
    """A point in monotonic time; ``remaining()`` never goes below zero."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def sooner(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now, but never later than this one."""
        return Deadline(min(seconds, self.remaining()))
