"""Store sizes and their event rates: what a retailer's fleet sends, store by store.

A store's rate is its shelves' and zones' events per second while open. The mix is a plain
table, drawn from with a seeded random generator so a run can be repeated exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["REALISTIC_MIX", "StoreProfile", "assign_profiles", "mean_rate", "poisson"]


@dataclass(frozen=True, slots=True)
class StoreProfile:
    name: str
    events_per_s: float
    share: float  # of the fleet


#: Half the fleet small stores, a few hypermarkets: mean 10 events/s a store.
REALISTIC_MIX: tuple[StoreProfile, ...] = (
    StoreProfile("small", 1.0, 0.50),
    StoreProfile("supermarket", 5.0, 0.30),
    StoreProfile("large", 20.0, 0.15),
    StoreProfile("hypermarket", 100.0, 0.05),
)


def mean_rate(mix: tuple[StoreProfile, ...] = REALISTIC_MIX) -> float:
    """Events/s of the mix's average store."""
    return sum(profile.events_per_s * profile.share for profile in mix)


def assign_profiles(
    stores: int, *, seed: int = 16, mix: tuple[StoreProfile, ...] = REALISTIC_MIX
) -> list[StoreProfile]:
    """One profile per store: the mix's shares rounded to whole stores (largest remainders),
    shuffled with ``seed`` so every worker process gets its share of each size."""
    exact = [profile.share * stores for profile in mix]
    counts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(mix)), key=lambda i: exact[i] - counts[i], reverse=True)
    for index in by_remainder[: stores - sum(counts)]:
        counts[index] += 1
    profiles = [profile for profile, count in zip(mix, counts, strict=True) for _ in range(count)]
    random.Random(seed).shuffle(profiles)
    return profiles


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (events in one commit interval): exact for small means, normal above."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count
