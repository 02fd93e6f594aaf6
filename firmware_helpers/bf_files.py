# File helpers for pytest-boardfarm, run in a board's raw REPL.
# Works with os.stat/os.ilistdir/hashlib where the firmware has them and with
# os.size/os.listdir (flat file system) where it does not, e.g. micro:bit 1.9.
# All names start with _bf so they stay out of the test's way.
import os

try:
    import hashlib as _bf_h
except ImportError:
    try:
        import uhashlib as _bf_h
    except ImportError:
        _bf_h = None


def _bf_size(n):
    # Size in bytes, -1 when missing, -2 for a directory.
    try:
        if hasattr(os, "stat"):
            s = os.stat(n)
            return -2 if s[0] & 0x4000 else s[6]
        return os.size(n)
    except OSError:
        return -1


def _bf_sum(n):
    # 'sha256:<hex>' where hashlib exists, else 'adler32:<int>' (zlib's Adler-32).
    f = open(n, "rb")
    if _bf_h:
        h = _bf_h.sha256()
        while 1:
            d = f.read(256)
            if not d:
                break
            h.update(d)
        f.close()
        return "sha256:" + "".join(["%02x" % c for c in h.digest()])
    a = 1
    b = 0
    while 1:
        d = f.read(256)
        if not d:
            break
        for c in d:
            a = (a + c) % 65521
            b = (b + a) % 65521
    f.close()
    return "adler32:%d" % ((b << 16) | a)


def _bf_state(n, size):
    # (size, checksum or None): the checksum only when the size already matches.
    s = _bf_size(n)
    return (s, _bf_sum(n) if s == size else None)


def _bf_ls(p):
    # [(name, is_dir, size)] for the entries of directory p.
    r = []
    if hasattr(os, "ilistdir"):
        for e in os.ilistdir(p):
            d = e[1] & 0x4000 != 0
            r.append((e[0], d, 0 if d else (e[3] if len(e) > 3 else _bf_size(p.rstrip("/") + "/" + e[0]))))
    else:
        for n in os.listdir():
            r.append((n, False, os.size(n)))
    return r


def _bf_read(n):
    # Print the file as 256-byte bytes literals, one per line. print(d) streams
    # the literal; repr(d) would allocate it, which fragments a small heap.
    f = open(n, "rb")
    while 1:
        d = f.read(256)
        if not d:
            break
        print(d)
    f.close()


def _bf_feat():
    return (hasattr(os, "stat"), hasattr(os, "mkdir"), _bf_h is not None)
