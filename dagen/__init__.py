"""dagen: expand a parallel deployment plan into its per-GPU operator and communication DAG.

The library is a handful of calls, one per layer of the flow plan → mesh → graph → checks →
cost → export:

>>> import dagen
>>> plan = dagen.load_plan("samples/seed-moe-10b-fixed.yaml")  # doctest: +SKIP
>>> analysis = dagen.analyse(plan)  # doctest: +SKIP
>>> dagen.write(analysis, [("dag.json", "json")])  # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dagen")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagen.api import Analysis, analyse, build, load_plan, write

_API = ("Analysis", "analyse", "build", "load_plan", "write")


def __getattr__(name: str) -> Any:
    # Lazy, so that importing one layer (dagen.mesh, say) does not import them all.
    if name in _API:
        from dagen import api

        return getattr(api, name)
    raise AttributeError(f"module 'dagen' has no attribute {name!r}")


__all__ = ["Analysis", "__version__", "analyse", "build", "load_plan", "write"]
