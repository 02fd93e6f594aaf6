# File helpers for pytest-boardfarm, run in a board's raw REPL.
# The host defines the functions one operation needs, runs it, then deletes
# them and collects: nothing stays on the board's heap between operations (a
# micro:bit has ~9 KB). Results are printed, never built up: print() streams a
# tuple's repr where repr() would allocate it whole.
# Works with os.stat/os.ilistdir/hashlib where the firmware has them and with
# os.size/os.listdir (flat file system) where it does not, e.g. micro:bit 1.9.
# All names start with _bf so they stay out of the test's way.


def _bf_feat():
    import os

    try:
        import hashlib
    except ImportError:
        try:
            import uhashlib as hashlib
        except ImportError:
            hashlib = None
    print((hasattr(os, "stat"), hasattr(os, "mkdir"), hashlib is not None))


def _bf_size(n):
    # Size in bytes, -1 when missing, -2 for a directory.
    import os

    try:
        if hasattr(os, "stat"):
            s = os.stat(n)
            return -2 if s[0] & 0x4000 else s[6]
        return os.size(n)
    except OSError:
        return -1


def _bf_sha(n):
    # 'sha256:<hex>', where the firmware has hashlib.
    try:
        import hashlib
    except ImportError:
        import uhashlib as hashlib
    h = hashlib.sha256()
    f = open(n, "rb")
    while 1:
        d = f.read(256)
        if not d:
            break
        h.update(d)
    f.close()
    return "sha256:" + "".join(["%02x" % c for c in h.digest()])


def _bf_adler(n):
    # 'adler32:<int>' (zlib's Adler-32), where it has none.
    a = 1
    b = 0
    f = open(n, "rb")
    while 1:
        d = f.read(256)
        if not d:
            break
        for c in d:
            a = (a + c) % 65521
            b = (b + a) % 65521
    f.close()
    return "adler32:%d" % ((b << 16) | a)


def _bf_state(n, size, checksum):
    # (size, checksum or None): the checksum only when the size already matches.
    s = _bf_size(n)
    print((s, checksum(n) if s == size else None))


def _bf_ls(p):
    # One (name, is_dir, size) line per entry of directory p, printed as found.
    import os

    if hasattr(os, "ilistdir"):
        for e in os.ilistdir(p):
            d = e[1] & 0x4000 != 0
            print((e[0], d, 0 if d else (e[3] if len(e) > 3 else _bf_size(p.rstrip("/") + "/" + e[0]))))
    else:
        for n in os.listdir():
            print((n, False, os.size(n)))


def _bf_read(n):
    # The file as 256-byte bytes literals, one per line; print(d) streams the
    # literal where repr(d) would allocate it.
    f = open(n, "rb")
    while 1:
        d = f.read(256)
        if not d:
            break
        print(d)
    f.close()
