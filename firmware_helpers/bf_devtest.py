# Device-test runner for pytest-boardfarm, run in a board's raw REPL.
# The host defines these once per test module per board, then the module's
# top-level code, then each test function on its own: _bf_t runs it and drops
# it, so a module of 50 tests never sits on a 9 KB heap at once.
# Asserts arrive rewritten on the host (devassert.py) into _bf_c / _bf_v calls,
# which keep the failing values in _bf_e for the host to read afterwards.
# MicroPython 1.9 and later: no f-strings, nothing that allocates needlessly.


class SkipTest(Exception):
    pass


_bf_e = None


def _bf_c(a, b, o, l):
    # assert a <op> b; o indexes devassert.OPERATORS (same order).
    global _bf_e
    if o == 0:
        r = a == b
    elif o == 1:
        r = a != b
    elif o == 2:
        r = a < b
    elif o == 3:
        r = a <= b
    elif o == 4:
        r = a > b
    elif o == 5:
        r = a >= b
    elif o == 6:
        r = a in b
    elif o == 7:
        r = a not in b
    elif o == 8:
        r = a is b
    else:
        r = a is not b
    if not r:
        _bf_e = (l, repr(a), repr(b))
    return r


def _bf_v(a, l):
    # assert a, for a plain value.
    global _bf_e
    if not a:
        _bf_e = (l, repr(a))
    return a


def _bf_t(n):
    # Run test function n once, with the module's setup_function/teardown_function.
    global _bf_e
    _bf_e = None
    g = globals()
    f = g.pop(n)
    import gc

    gc.collect()
    s = g.get("setup_function")
    t = g.get("teardown_function")
    if s:
        s()
    try:
        f()
    finally:
        if t:
            t()
