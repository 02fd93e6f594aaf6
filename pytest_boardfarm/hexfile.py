"""Intel HEX firmware images: read, write, and the micro:bit's embedded script.

The micro:bit MicroPython firmware runs a script stored in its own flash at
0x3E000 (``b"MP"``, a little-endian 16-bit length, the script, padded to 16
bytes) at boot, like main.py. Writing such records into Debian's firmware.hex
gives genuine, different firmware images to flash: what the project's flashing
tests use, and what ``uflash`` does for micro:bit users.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

SCRIPT_ADDRESS = 0x3E000
SCRIPT_MAX = 8 * 1024 - 4  # the script area ends where the file system begins
UICR_RECORD = ":020000041000EA"  # the firmware's last segment (the UICR); the script goes before it
DATA, END, EXTENDED_LINEAR = 0x00, 0x01, 0x04


class HexError(ValueError):
    """Not an Intel HEX file this module can handle, or a script that does not fit."""


@dataclass(frozen=True)
class Record:
    kind: int
    address: int  # the record's 16-bit offset
    data: bytes

    def line(self) -> str:
        body = bytes([len(self.data), self.address >> 8, self.address & 0xFF, self.kind]) + self.data
        return ":" + (body + bytes([(-sum(body)) & 0xFF])).hex().upper()


def parse_line(line: str, number: int = 0) -> Record:
    """One record, its checksum and length checked."""
    text = line.strip()
    if not text.startswith(":"):
        raise HexError(f"line {number}: not an Intel HEX record: {text[:20]!r}")
    try:
        raw = bytes.fromhex(text[1:])
    except ValueError:
        raise HexError(f"line {number}: not hexadecimal: {text[:20]!r}") from None
    if len(raw) < 5 or len(raw) != raw[0] + 5:
        raise HexError(f"line {number}: length does not match the record's byte count")
    if sum(raw) & 0xFF:
        raise HexError(f"line {number}: bad checksum")
    return Record(raw[3], (raw[1] << 8) | raw[2], raw[4:-1])


def parse(text: str) -> list[Record]:
    return [parse_line(line, n) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def memory(records: list[Record]) -> dict[int, bytes]:
    """Absolute address -> data of each data record."""
    base = 0
    out = {}
    for record in records:
        if record.kind == EXTENDED_LINEAR:
            base = int.from_bytes(record.data, "big") << 16
        elif record.kind == DATA:
            out[base + record.address] = record.data
    return out


def script_records(script: bytes) -> list[Record]:
    """The records that store ``script`` at 0x3E000, with their segment record."""
    if len(script) > SCRIPT_MAX:
        raise HexError(f"script is {len(script)} bytes; at most {SCRIPT_MAX} fit at 0x{SCRIPT_ADDRESS:X}")
    blob = b"MP" + len(script).to_bytes(2, "little") + script
    blob += b"\x00" * (-len(blob) % 16)
    records = [Record(EXTENDED_LINEAR, 0, (SCRIPT_ADDRESS >> 16).to_bytes(2, "big"))]
    for offset in range(0, len(blob), 16):
        records.append(Record(DATA, (SCRIPT_ADDRESS + offset) & 0xFFFF, blob[offset : offset + 16]))
    return records


def embed_script(firmware_hex: str, script: str | bytes) -> str:
    """The firmware with ``script`` run at boot (inserted before the UICR records)."""
    data = script.encode("utf-8") if isinstance(script, str) else script
    parse(firmware_hex)  # refuse a damaged input rather than hide it inside a new image
    lines = firmware_hex.splitlines()
    try:
        at = lines.index(UICR_RECORD)
    except ValueError:
        raise HexError(f"no {UICR_RECORD} record: not a micro:bit MicroPython firmware.hex") from None
    if any(address >= SCRIPT_ADDRESS and address < SCRIPT_ADDRESS + 0x2000 for address in memory(parse(firmware_hex))):
        raise HexError("the firmware already holds a script at 0x3E000")
    new = [record.line() for record in script_records(data)]
    return "\n".join(lines[:at] + new + lines[at:]) + "\n"


def embedded_script(firmware_hex: str) -> bytes | None:
    """The script an image runs at boot, or None."""
    mem = memory(parse(firmware_hex))
    blob = b"".join(mem[a] for a in sorted(mem) if SCRIPT_ADDRESS <= a < SCRIPT_ADDRESS + 0x2000)
    if not blob.startswith(b"MP"):
        return None
    return blob[4 : 4 + int.from_bytes(blob[2:4], "little")]


def corrupt_runtime(firmware_hex: str, start_line: int = 100, count: int = 2000) -> str:
    """A copy whose MicroPython runtime code is zeroed (checksums kept valid):
    a loader accepts it, the chip does not run it. For rollback tests."""
    lines = firmware_hex.splitlines()
    out = []
    for number, line in enumerate(lines):
        record = parse_line(line, number + 1)
        if start_line <= number < start_line + count and record.kind == DATA:
            line = Record(DATA, record.address, b"\xff" * len(record.data)).line()
        out.append(line)
    return "\n".join(out) + "\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
