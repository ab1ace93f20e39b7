"""Reading an input file safely: regular files only, never more than a limit.

A FIFO would block dagen until a writer came; ``/dev/zero`` or ``/dev/urandom`` would
fill memory; a socket or a terminal is not a plan. :func:`read_limited` refuses every
file that is not a regular one before opening it, and reads at most ``limit + 1``
bytes of a regular one (it may grow between the check and the read).

Example:
    >>> read_limited(Path("/dev/zero"), 1 << 20)  # doctest: +SKIP
    Traceback (most recent call last):
    dagen.plan.files.Refused: /dev/zero is a character device, not a regular file
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["Refused", "read_limited"]

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a directory"))  # fmt: skip


class Refused(Exception):
    """The file is not read: ``reason`` says why, ``fix`` what to do."""

    def __init__(self, reason: str, fix: str, size: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.fix, self.size = reason, fix, size


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises:
        Refused: not a regular file, or more than ``limit`` bytes (``size`` set).
        OSError: it cannot be stat'ed or read (FileNotFoundError when absent).
    """
    mode = os.stat(path).st_mode
    for test, kind in _KINDS:
        if test(mode):
            fix = "save it to a regular file first (e.g. cat … > plan.yaml) and give that path"
            raise Refused(f"{os.fsdecode(path)} is {kind}, not a regular file", fix)
    with open(path, "rb") as fh:  # O_NONBLOCK is moot: only regular files get here
        data = fh.read(limit + 1)
    if len(data) > limit:
        size = max(len(data), os.stat(path).st_size)
        raise Refused(f"{os.fsdecode(path)} is over {limit:,} bytes", "check the path", size)
    return data
