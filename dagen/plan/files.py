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
import tempfile
from pathlib import Path

__all__ = ["Refused", "kept_mode", "new_file_mode", "read_limited", "replace_file", "temp_prefix"]

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


NAME_MAX = 255
"""Bytes in one file name on Linux and macOS file systems (ext4, XFS, APFS)."""


def temp_prefix(path: Path) -> str:
    """``.name.`` for a temporary file beside ``path``, or ``.dagen.`` when that with
    mkstemp's 8 random characters and a 5-byte suffix would pass :data:`NAME_MAX`."""
    prefix = f".{path.name}."
    return ".dagen." if len(os.fsencode(prefix)) + 8 + 5 > NAME_MAX else prefix


def new_file_mode() -> int:
    """0666 less the umask: the permissions a new output gets."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def kept_mode(path: Path, default: int | None = None) -> int:
    """The permissions of the regular file ``path`` (kept when it is replaced), else
    ``default`` (0666 less the umask, as a new file gets)."""
    try:
        st = path.stat()
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return new_file_mode() if default is None else default


def replace_file(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` whole or not at all: a temporary file beside it, the
    replaced file's permissions, one rename. Any exception (an I/O error, a signal)
    removes the temporary file.

    Raises:
        OSError: the directory is missing or not writable, or the disk is full.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temp, kept_mode(path))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
