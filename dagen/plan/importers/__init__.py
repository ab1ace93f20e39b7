"""Plans from the flags users already run: ``dagen import vllm|sglang|megatron``.

:func:`import_plan` reads a framework's command line (one module per framework:
:mod:`.vllm`, :mod:`.sglang`, :mod:`.megatron`), checks it against the framework's own
rules, lays it out the way that framework does, and writes a plan whose every value
names the flag it came from (docs/import.md). The model is a Hugging Face
``config.json`` (``--model-config``), referenced by the plan's ``model.hf_config``.

Example:
    >>> from pathlib import Path
    >>> out = import_plan("vllm", ["-tp", "2", "-dp", "2", "--enable-expert-parallel"],
    ...                   model_config=Path("tests/data/hf/mixtral-8x7b.json"),
    ...                   output=Path("plan.yaml"))  # doctest: +SKIP
    >>> out.plan.parallel.ep, str(out.plan.where("parallel.tp"))  # doctest: +SKIP
    (4, '-tp 2 (plan.yaml:9:7)')
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from dagen.errors import FlagError
from dagen.findings import Finding
from dagen.plan.files import replace_file
from dagen.plan.importers import megatron, sglang, vllm
from dagen.plan.importers.draft import Draft, Facts, Traced, model_facts, render
from dagen.plan.importers.flags import Flag, Given, parse
from dagen.plan.loader import load_plan_text
from dagen.plan.model import Plan
from dagen.plan.rules import plan_findings

__all__ = ["FRAMEWORKS", "Framework", "Imported", "import_plan", "write_plan"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Framework:
    """One framework an import reads."""

    name: str
    source: str
    """The version whose source the rules were read from."""
    flags: tuple[Flag, ...]
    translate: Callable[[Given, Facts], Draft]


FRAMEWORKS: Mapping[str, Framework] = MappingProxyType(
    {
        m.NAME: Framework(name=m.NAME, source=m.SOURCE, flags=m.FLAGS, translate=m.translate)
        for m in (vllm, sglang, megatron)
    }
)
"""Every framework ``dagen import`` reads, by name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    """An imported plan: its text, the validated plan, and the plan rules' findings."""

    text: str
    """The plan YAML, every value with a ``# flag: …`` comment."""
    plan: Plan
    findings: tuple[Finding, ...]
    """The plan rules' findings, each pointing at the flag behind its field."""


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def import_plan(
    framework: str, argv: Sequence[str], *, model_config: Path, output: Path
) -> Imported:
    """Read ``argv`` as ``framework``'s flags and make the plan to be written at ``output``.

    Raises:
        FlagError: an unknown flag, conflicting flags, a value the framework rejects,
            or a layout dagen cannot write; the message names the flags and the rule.
    """
    fw = FRAMEWORKS.get(framework)
    if fw is None:
        raise FlagError(
            f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}."
        )
    given = parse(fw.name, fw.flags, argv)
    config_flag = f"--model-config {model_config}"
    if not output.parent.resolve().is_dir():
        raise FlagError(f"-o {output}: no directory {output.parent}. Fix: create it first.")
    if not model_config.is_file():
        raise FlagError(f"{config_flag}: no such file. Fix: give the model's HF config.json.")
    draft = fw.translate(given, model_facts(model_config))
    command = " ".join(["dagen import", fw.name, *map(shlex.quote, argv)])
    text = render(
        command=command,
        name=Traced(output.stem or "plan", f"-o {output}"),
        model_config=Traced(_relative(model_config, output.parent), config_flag),
        draft=draft,
    )
    plan = load_plan_text(text, source=str(output), base_dir=output.parent)
    return Imported(text=text, plan=plan, findings=tuple(plan_findings(plan)))


def write_plan(output: Path, text: str) -> None:
    """Write ``text`` to ``output`` atomically: a temporary file beside it, then a rename,
    so a failed write leaves nothing behind and an existing file untouched.

    Raises:
        FlagError: on ``-o``, when the file cannot be written.
    """
    try:
        replace_file(output, text.encode("utf-8"))
    except OSError as exc:
        raise FlagError(f"-o {output}: cannot write: {exc.strerror or exc}.") from None
