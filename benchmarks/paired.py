"""Is one contender ahead of another?  A sign test over interleaved rounds.

Each round of the contended benchmark measures every contender against an
ideal of its own, in windows interleaved with the others', so the ratios of
two contenders in the same round saw the same machine.  The two medians can
sit 0.01 apart at the ceiling and swap places between runs; counting the
rounds each one won says whether the gap is more than chance would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Optional, Sequence

#: One-sided chance, under "neither is ahead", of a split at least this lopsided,
#: below which the split counts: 5 of 5 rounds, 7 of 8, 8 of 9, 18 of 25.
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Comparison:
    """``ours`` against ``theirs``, round by round (rounds with equal ratios dropped)."""

    wins: int
    losses: int
    p_ahead: float  # chance of at least ``wins`` wins if neither were ahead
    p_behind: float  # chance of at least ``losses`` losses

    @property
    def verdict(self) -> Optional[bool]:
        """True: ahead; False: behind; None: the rounds do not tell (a tie)."""
        if self.p_ahead <= SIGNIFICANCE:
            return True
        if self.p_behind <= SIGNIFICANCE:
            return False
        return None

    def describe(self) -> str:
        rounds = self.wins + self.losses
        return f"ahead in {self.wins} of {rounds} rounds, p={min(self.p_ahead, self.p_behind):.3f}"


def tail(n: int, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2)."""
    if k <= 0:
        return 1.0
    return sum(comb(n, i) for i in range(k, n + 1)) / 2**n


def compare(ours: Sequence[Optional[float]], theirs: Sequence[Optional[float]]) -> Comparison:
    """Pair the rounds (same index) where both have a ratio, and test the split."""
    wins = losses = 0
    for a, b in zip(ours, theirs):
        if a is None or b is None or a == b:
            continue
        if a > b:
            wins += 1
        else:
            losses += 1
    n = wins + losses
    return Comparison(wins, losses, tail(n, wins), tail(n, losses))
