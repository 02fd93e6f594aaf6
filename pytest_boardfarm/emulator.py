"""Compatibility: the emulated board types now live in ``pytest_boardfarm.emulators``."""

from __future__ import annotations

from .emulators import EMULATORS, EmulatedBoard, EmulatorError, WebAssemblyBoard, start_many
from .emulators.base import _die_with_parent, free_port
from .emulators.microbit import DEBIAN_PACKAGES, FIRMWARE, QEMU, MicrobitEmulator, check_installed

__all__ = [
    "DEBIAN_PACKAGES",
    "EMULATORS",
    "FIRMWARE",
    "QEMU",
    "EmulatedBoard",
    "EmulatorError",
    "MicrobitEmulator",
    "WebAssemblyBoard",
    "_die_with_parent",
    "check_installed",
    "free_port",
    "start_many",
]
