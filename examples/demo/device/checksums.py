# An output test (MicroPython's run-tests convention): runs whole on every board,
# and what it prints must equal checksums.py.exp.
import blinky

for text in (b"", b"a", b"micro:bit"):
    print(text, blinky.checksum(text))
