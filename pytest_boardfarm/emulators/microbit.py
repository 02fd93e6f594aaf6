"""The genuine micro:bit MicroPython firmware (1.9.2) under QEMU."""

from __future__ import annotations

import shutil
from pathlib import Path

from .base import EmulatedBoard, EmulatorError

FIRMWARE = Path("/usr/share/firmware-microbit-micropython/firmware.hex")
QEMU = "qemu-system-arm"
DEBIAN_PACKAGES = "qemu-system-arm firmware-microbit-micropython"


def check_installed(qemu: str = QEMU, firmware: Path = FIRMWARE) -> str:
    """Path of the QEMU binary, or an error naming the packages to install."""
    binary = shutil.which(qemu)
    missing = [what for what, ok in ((qemu, binary), (str(firmware), firmware.is_file())) if not ok]
    if missing:
        raise EmulatorError(
            f"cannot start an emulated micro:bit: {', '.join(missing)} not found; "
            f"install them with: apt-get install {DEBIAN_PACKAGES}"
        )
    assert binary is not None
    return binary


class MicrobitEmulator(EmulatedBoard):
    """One QEMU micro:bit; ``firmware`` is the .hex image it runs (Debian's by default)."""

    name = "microbit"
    what = "an emulated micro:bit"
    keeps_connection = True  # QEMU's system_reset: the same process, the same socket
    # The banner's last line and the prompt: a boot script (run before them) may print ">>> " itself
    boot_prompt = b"for more information.\r\n>>> "

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        firmware: Path | None = None,
        qemu: str = QEMU,
    ) -> None:
        self.qemu = qemu
        super().__init__(firmware=firmware, port=port, host=host)

    @classmethod
    def default_firmware(cls) -> Path:
        return FIRMWARE

    def check_installed(self) -> list[str]:
        return [check_installed(self.qemu, self.firmware)]

    def argv(self, program: list[str]) -> list[str]:
        return [
            *program, "-M", "microbit", "-display", "none", "-monitor", "stdio",
            "-device", f"loader,file={str(self.firmware).replace(',', ',,')}",  # ',,': a comma in QEMU's options
            # wait=on: the chip starts when start() connects, so no boot output is lost
            "-serial", f"tcp:{self.host}:{self.port},server=on,wait=on,nodelay=on",
        ]  # fmt: skip

    def hard_reset(self) -> None:
        """Reset the emulated chip (RAM cleared, flash kept), like the RESET button."""
        if not self.running() or self._proc is None or self._proc.stdin is None:
            raise EmulatorError(f"emulated board {self.url} is not running")
        self._proc.stdin.write(b"system_reset\n")
        self._proc.stdin.flush()
