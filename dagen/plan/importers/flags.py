"""A framework's flags: what each one is, how a command line is parsed, what it gave.

Each importer lists the flags it reads as :class:`Flag` records (the names the framework
spells, its default, its type); :func:`parse` reads a command line against them with
:mod:`argparse` (``--flag v``, ``--flag=v`` and the framework's short forms such as
vLLM's ``-tp``), and returns :class:`Given`: every value, and how the user wrote it. A
flag not listed, or one written twice with different values, is a :class:`FlagError`
naming it.

Example:
    >>> flags = (Flag(names=("--tensor-parallel-size", "-tp"), default=1),)
    >>> given = parse("vllm", flags, ["-tp=4"])
    >>> given["tensor_parallel_size"], given.origin("tensor_parallel_size")
    (4, '-tp 4')
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dagen.errors import FlagError

__all__ = ["Flag", "Given", "parse", "reject"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Flag:
    """One flag an importer reads."""

    names: tuple[str, ...]
    """Every spelling the framework accepts, the long one first (``--tensor-parallel-size``,
    ``-tp``)."""
    default: Any
    """The framework's default. A bool flag is a switch (``store_true``)."""
    choices: tuple[str, ...] = ()
    """Allowed values of a string flag (the framework's own list)."""
    negatable: bool = False
    """A bool flag that also has a ``--no-…`` form (argparse ``BooleanOptionalAction``)."""
    minimum: int | None = 1
    """Smallest value of an int flag the framework accepts."""

    @property
    def dest(self) -> str:
        """The attribute name: the long name without dashes, ``_`` for ``-``."""
        return self.names[0].lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class Given:
    """The values a command line gave, defaults filled, and how each was written."""

    values: Mapping[str, Any]
    """``dest`` → value."""
    spelled: Mapping[str, str] = field(default_factory=dict)
    """``dest`` → the flag as written (``-tp 4``); absent for a default."""
    names: Mapping[str, str] = field(default_factory=dict)
    """``dest`` → the flag's long name, for defaults."""

    def __getitem__(self, dest: str) -> Any:
        return self.values[dest]

    def given(self, dest: str) -> bool:
        """Whether the command line wrote the flag."""
        return dest in self.spelled

    def origin(self, *dests: str) -> str:
        """Where a value came from: the flags as written, or ``--name (default v)``."""
        parts = []
        for d in dests:
            if d in self.spelled:
                parts.append(self.spelled[d])
            else:
                parts.append(f"{self.names[d]} (default {_show(self.values[d])})")
        return ", ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`FlagError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise FlagError(f"{self.prog}: {message}. Fix: see `dagen import {self.prog} --help`.")


class _Record(argparse.Action):
    """Store a value and remember how it was written; refuse a second, different one."""

    def __init__(self, *args: Any, flag: Flag, **kwargs: Any) -> None:
        self.flag = flag
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        name = option_string or self.flag.names[0]
        if self.nargs == 0:
            values = not name.startswith("--no-")
            written = name
        else:
            written = f"{name} {values}"
        spelled: dict[str, str] = namespace.__dict__.setdefault("_spelled", {})
        before = spelled.get(self.dest)
        if before is not None and getattr(namespace, self.dest) != values:
            raise FlagError(
                f"{parser.prog}: conflicting flags {before} and {written}: both set "
                f"{self.flag.names[0]}, to different values. Fix: give it once."
            )
        spelled[self.dest] = written
        setattr(namespace, self.dest, values)


def _int_type(flag: Flag, prog: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if flag.minimum is not None and value < flag.minimum:
            raise argparse.ArgumentTypeError(
                f"{value} is below {flag.minimum}; {prog} requires at least {flag.minimum}"
            )
        return value

    return convert


def _parser(prog: str, flags: Sequence[Flag]) -> _Parser:
    parser = _Parser(prog=prog, add_help=False, allow_abbrev=False, exit_on_error=False)
    for f in flags:
        names = list(f.names)
        kwargs: dict[str, Any] = {"dest": f.dest, "default": f.default, "flag": f}
        if isinstance(f.default, bool):
            if f.negatable:
                names.append("--no-" + f.names[0].removeprefix("--"))
            kwargs["nargs"] = 0
        elif f.choices:
            kwargs["choices"] = f.choices
        elif isinstance(f.default, float):
            kwargs["type"] = float
        elif isinstance(f.default, int) or f.default is None:
            kwargs["type"] = _int_type(f, prog)
        parser.add_argument(*names, action=_Record, **kwargs)
    return parser


def _unknown(prog: str, flags: Sequence[Flag], extra: list[str]) -> NoReturn:
    known = [n for f in flags for n in f.names]
    word = next((a for a in extra if a.startswith("-")), extra[0])
    stem = word.split("=", 1)[0]
    guess = difflib.get_close_matches(stem, known, n=1, cutoff=0.6)
    hint = f" Did you mean {guess[0]}?" if guess else ""
    what = "unknown flag" if word.startswith("-") else "unexpected argument"
    raise FlagError(
        f"{prog}: {what} {word!r}: `dagen import {prog}` reads only the flags that shape the "
        f"layout ({', '.join(f.names[0] for f in flags)}).{hint} Fix: drop it, or check "
        f"`dagen import {prog} --help`."
    )


def parse(prog: str, flags: Sequence[Flag], argv: Sequence[str]) -> Given:
    """Read ``argv`` against ``flags``.

    Raises:
        FlagError: an unknown flag, a bad value (naming the flag), or one flag written
            twice with different values.
    """
    parser = _parser(prog, flags)
    try:
        namespace, extra = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        parser.error(str(exc))
    if extra:
        _unknown(prog, flags, extra)
    spelled = namespace.__dict__.pop("_spelled", {})
    return Given(
        values=dict(vars(namespace)),
        spelled=spelled,
        names={f.dest: f.names[0] for f in flags},
    )


def reject(prog: str, flags: str, found: str, rule: str, fix: str) -> NoReturn:
    """Raise the error for a value the framework itself refuses.

    Args:
        prog: The framework (``vllm``).
        flags: The flags involved, as written.
        found: What the values give.
        rule: The framework's rule, with the file and function it is checked in.
        fix: What to change.
    """
    raise FlagError(f"{prog}: {flags}: {found}; {rule}. Fix: {fix}.")
