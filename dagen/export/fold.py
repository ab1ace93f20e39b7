"""Runs of like pipeline stages drawn as one box: a 16-stage pipeline of equal middle
stages is drawn as first, "stages 1–14", last.

Example:
    >>> runs, links = fold_stages(overview(graph).stages, overview(graph).links)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from dagen.export.overview import Block, Link, Stage
from dagen.export.summary import rank_ranges

__all__ = ["StageRun", "fold_stages"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StageRun:
    """Consecutive stages drawn as one box: one stage, or a folded run of like stages."""

    stages: tuple[Stage, ...]

    @property
    def index(self) -> int:
        """The first stage's index; pictures name the box after it."""
        return self.stages[0].index

    @property
    def folded(self) -> bool:
        """More than one stage."""
        return len(self.stages) > 1

    @property
    def heading(self) -> str:
        """``stage 0: L0–4, 16 GPUs`` or ``stages 1–14 (14 stages, 6 layers each): …``."""
        first, last = self.stages[0], self.stages[-1]
        if not self.folded:
            return f"stage {first.index}: {first.layers}, {first.n_ranks} GPUs"
        count = f"{len(self.stages)} stages, {first.n_layers} layers each"
        return (
            f"stages {first.index}–{last.index} ({count}): {self._span()}, "
            f"{first.n_ranks} GPUs each"
        )

    def _span(self) -> str:
        """``L5–88``: first layer of the first stage to last layer of the last."""
        firsts = [b.first for s in self.stages for b in s.blocks if b.first >= 0]
        lasts = [b.last for s in self.stages for b in s.blocks if b.first >= 0]
        return f"L{min(firsts)}–{max(lasts)}" if firsts else "—"

    @property
    def ranks(self) -> str:
        """All its ranks as ranges."""
        if not self.folded:
            return self.stages[0].ranks
        return rank_ranges(sorted(r for s in self.stages for r in s.rank_ids))

    @property
    def hosts(self) -> str:
        """All its hosts as ranges."""
        if not self.folded:
            return self.stages[0].hosts
        return rank_ranges(sorted({h for s in self.stages for h in s.host_ids}))

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The first stage's blocks; folded, their titles give layers per stage."""
        blocks = self.stages[0].blocks
        if not self.folded:
            return blocks
        layered = [b for b in blocks if b.first >= 0]
        span = f"{self._span()} · " if len(layered) == 1 else ""
        out = []
        for b in blocks:
            if b.first >= 0:
                n = b.last - b.first + 1
                what = b.title.split(" · ", 1)[1].split(" (")[0]
                b = dataclasses.replace(
                    b, title=f"{span}{what} ({n} layer{'s' * (n > 1)} per stage)"
                )
            out.append(b)
        return tuple(out)


def _likeness(stage: Stage, links: tuple[Link, ...]) -> tuple[object, ...]:
    """What must match for two stages to fold: blocks up to layer numbers, sends out."""
    blocks = tuple(
        (b.kind, b.last - b.first, b.first < 0, b.lines, b.comms, b.experts_per_rank, b.flops)
        for b in stage.blocks
    )
    sends = tuple(sorted(lk.label for lk in links if lk.src == stage.index))
    return (stage.n_ranks, blocks, sends)


def fold_stages(
    stages: tuple[Stage, ...], links: tuple[Link, ...], min_run: int = 3
) -> tuple[tuple[StageRun, ...], tuple[Link, ...]]:
    """Fold runs of at least ``min_run`` consecutive like stages into one :class:`StageRun`.

    Two stages are alike when their blocks match up to layer numbers and their outgoing
    sends carry the same labels. Sends inside a folded run are dropped (each equals the
    run's send out); the others are kept, with ``src``/``dst`` renamed to the index of
    the run holding that stage (its first stage).

    Example:
        >>> ov = overview(graph)  # a uniform PP6 plan  # doctest: +SKIP
        >>> runs, links = fold_stages(ov.stages, ov.links)  # doctest: +SKIP
        >>> [[s.index for s in r.stages] for r in runs]  # doctest: +SKIP
        [[0], [1, 2, 3, 4], [5]]
        >>> [(lk.src, lk.dst) for lk in links]  # doctest: +SKIP
        [(0, 1), (1, 5)]
    """
    runs: list[StageRun] = []
    for _, group in itertools.groupby(stages, key=lambda s: _likeness(s, links)):
        members = tuple(group)
        if len(members) >= min_run:
            runs.append(StageRun(stages=members))
        else:
            runs += [StageRun(stages=(s,)) for s in members]
    owner = {s.index: r.index for r in runs for s in r.stages}
    kept = []
    for lk in links:
        src, dst = owner[lk.src], owner[lk.dst]
        if src == dst and lk.src != lk.dst:
            continue
        kept.append(dataclasses.replace(lk, src=src, dst=dst))
    return tuple(runs), tuple(kept)
