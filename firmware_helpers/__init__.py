"""MicroPython source that pytest-boardfarm runs on the boards.

Installed as ``pytest_boardfarm.firmware_helpers`` so that a user's own package of
this generic name cannot shadow it. The files here are not imported on the host:
``pytest_boardfarm.helper_sources`` reads their text and sends it to a board's raw
REPL. They must run on MicroPython 1.9 (the micro:bit) and on current firmware.
"""
