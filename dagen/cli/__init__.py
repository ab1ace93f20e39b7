"""The ``dagen`` command: a thin click layer over :mod:`dagen.api`.

Exit status: 0 clean, 1 error-level findings, 2 bad input or usage. A
:class:`~dagen.errors.DagenError` becomes its message on stderr, never a traceback
(unless ``--debug``).
"""

from __future__ import annotations

from dagen.cli import analyse, tools  # noqa: F401  (the commands register on main)
from dagen.cli.app import main
from dagen.cli.common import EXIT_FINDINGS, EXIT_USAGE, WRAP_DEFAULT

__all__ = ["EXIT_FINDINGS", "EXIT_USAGE", "WRAP_DEFAULT", "main"]
