"""A stand-in flasher for the ``flash:`` command path: ``python flasher.py SOCKET IMAGE``.

It asks the test that owns the board (listening on the unix socket) to put IMAGE
on it, and exits 0 when the test says ``ok``, 1 otherwise: like esptool, which
writes the image and leaves the board to re-enumerate on USB in its own time.
"""

from __future__ import annotations

import socket
import sys


def main() -> int:
    path, image = sys.argv[1], sys.argv[2]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(image.encode() + b"\n")
        answer = sock.makefile().readline().strip()
    print(answer)
    return 0 if answer == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
