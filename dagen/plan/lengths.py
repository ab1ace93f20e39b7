"""Token-length distributions of a workload's prompts and outputs, and their expectations.

Benchmarks draw request lengths from a distribution: trtllm-bench's ``prepare_dataset``
``token-norm-dist`` (``--input-mean``, ``--input-stdev``) and ``token-unif-dist``
(``--input-min``, ``--input-max``), vLLM's ``benchmark_serving`` random dataset (uniform
over ``len·(1 ± range_ratio)``), and lognormal fits of production traces. A
:class:`Lengths` names one: ``fixed`` (every request ``mean`` tokens), ``uniform``
(integers ``min`` … ``max``, each equally likely), ``normal`` or ``lognormal`` (with
``mean`` and ``stdev`` of the length itself); a sample outside ``[min, max]`` is clipped to
the bound, as the generators clip.

The steady state needs expectations, not one length (docs/cost-model.md, "Serving"):
``E[X]`` (tokens prefilled and decoded per request), ``E[X²]`` (a request that decodes
longer is in flight longer, so the mean context of a decoding request is
``E[I] + E[O²] / (2·E[O])``) and ``E[⌈I / B⌉]`` (prefill iterations under a chunk budget).
:meth:`Lengths.expect` computes them on the integer lengths (at most
:data:`GRID` points, each carrying the probability of the integers around it).

Example:
    >>> Lengths(dist=Dist.UNIFORM, min=1, max=3).expect(lambda x: x)
    2.0
    >>> round(Lengths(dist=Dist.FIXED, mean=100).expect(lambda x: x * x))
    10000
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dagen.plan.fields import spec

__all__ = ["GRID", "Dist", "Lengths"]

F64 = npt.NDArray[np.float64]
_BIG = 1 << 26
GRID = 1 << 16
"""Most points a distribution is evaluated on (every integer when the range is smaller)."""
_TAIL = 12.0
"""Standard deviations above the mean an unbounded normal or lognormal is cut at."""


class Dist(enum.StrEnum):
    """The shape of a length distribution."""

    FIXED = "fixed"
    UNIFORM = "uniform"
    NORMAL = "normal"
    LOGNORMAL = "lognormal"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lengths:
    """A distribution of request lengths in tokens (trtllm-bench / vLLM benchmark terms)."""

    dist: Dist = spec("fixed, uniform, normal or lognormal.", default=Dist.FIXED)
    mean: float | None = spec(
        "Mean length (fixed, normal, lognormal; uniform: (min + max) / 2 if given).",
        default=None, unit="tokens", minimum=0, maximum=_BIG,
    )  # fmt: skip
    stdev: float = spec(
        "Standard deviation of the length (normal, lognormal).",
        default=0.0, unit="tokens", minimum=0, maximum=_BIG,
    )  # fmt: skip
    min: int = spec(
        "Shortest length (uniform: the low end; others: samples below are clipped up).",
        default=1, unit="tokens", minimum=0, maximum=_BIG,
    )  # fmt: skip
    max: int | None = spec(
        "Longest length (uniform: required; others: samples above are clipped down).",
        default=None, unit="tokens", minimum=0, maximum=_BIG,
    )  # fmt: skip

    def problems(self) -> list[tuple[str, str, str]]:
        """(key, what is wrong, fix) for every inconsistency; empty when it is valid."""
        out: list[tuple[str, str, str]] = []
        hi = self.max
        if hi is not None and hi < self.min:
            out.append(("max", f"max {hi} is below min {self.min}", f"use max ≥ {self.min}"))
        if self.dist is Dist.UNIFORM:
            if hi is None:
                out.append(("max", "a uniform distribution needs max", "add 'max: …'"))
            elif self.mean is not None and abs(self.mean - (self.min + hi) / 2) > 0.5:
                mid = (self.min + hi) / 2
                out.append(("mean", f"mean {self.mean:g} is not (min + max) / 2 = {mid:g}",
                            f"drop mean or write {mid:g}"))  # fmt: skip
            return out
        if self.mean is None:
            return [*out, ("mean", f"a {self.dist.value} distribution needs mean", "add 'mean: …'")]
        if self.dist is Dist.FIXED and self.stdev:
            out.append(("stdev", "a fixed length has no stdev", "drop stdev or use dist: normal"))
        if self.dist in (Dist.NORMAL, Dist.LOGNORMAL) and not self.stdev:
            out.append(("stdev", f"a {self.dist.value} distribution needs stdev > 0",
                        "add 'stdev: …' (or use dist: fixed)"))  # fmt: skip
        if self.mean < self.min or (hi is not None and self.mean > hi):
            out.append(("mean", f"mean {self.mean:g} lies outside [min, max] = "
                        f"[{self.min}, {hi if hi is not None else '∞'}]", "move mean inside"))  # fmt: skip
        return out

    def _points(self) -> tuple[F64, F64]:
        """(lengths, probabilities) the expectations sum over."""
        if self.dist is Dist.FIXED:
            return np.array([float(self.mean or 0)]), np.ones(1)
        lo = float(self.min)
        mean, sd = float(self.mean or 0), float(self.stdev)
        hi = float(self.max) if self.max is not None else max(mean + _TAIL * sd, lo)
        n = int(min(hi - lo + 1, GRID))
        x = np.linspace(lo, hi, n) if n > 1 else np.array([lo])
        if self.dist is Dist.UNIFORM:
            return x, np.full(n, 1.0 / n)
        edges = np.concatenate([[-np.inf], (x[1:] + x[:-1]) / 2, [np.inf]])
        cdf = np.array([self._cdf(e, mean, sd) for e in edges])
        return x, np.diff(cdf)  # mass beyond a bound sits at the bound (clipping)

    def _cdf(self, at: float, mean: float, sd: float) -> float:
        if at == -np.inf or (self.dist is Dist.LOGNORMAL and at <= 0):
            return 0.0
        if at == np.inf:
            return 1.0
        if self.dist is Dist.NORMAL:
            return 0.5 * (1 + math.erf((at - mean) / (sd * math.sqrt(2))))
        s2 = math.log(1 + (sd / mean) ** 2)  # lognormal with this mean and stdev
        mu = math.log(mean) - s2 / 2
        return 0.5 * (1 + math.erf((math.log(at) - mu) / math.sqrt(2 * s2)))

    def expect(self, fn: Callable[[F64], F64]) -> float:
        """``E[fn(X)]`` of a length ``X`` (``fn`` takes and returns numpy arrays)."""
        x, p = _grid(self)
        return float(np.dot(np.asarray(fn(x), dtype=np.float64), p))


@functools.lru_cache(maxsize=64)
def _grid(lengths: Lengths) -> tuple[F64, F64]:
    return lengths._points()
