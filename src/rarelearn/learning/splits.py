"""Seeds and train/validation splits of the committee members (paper 2.3.6)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["seed_for", "random_split", "inherited_split"]


def seed_for(iteration: int, member: int, base_seed: int = 0) -> int:
    """Deterministic training seed of ``member`` in active-learning ``iteration``.

    Distinct (iteration, member, base_seed) give independent 31-bit seeds
    (numpy ``SeedSequence``); the same inputs always give the same seed.
    """
    if iteration < 0 or member < 0 or base_seed < 0:
        raise ValueError("iteration, member and base_seed must be >= 0")
    ss = np.random.SeedSequence([int(base_seed), int(iteration), int(member), 0x5EED])
    return int(ss.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


def random_split(n: int, seed: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split of ``n`` frames.

    ``round(train_fraction · n)`` frames train (at least one frame on each side when
    n ≥ 2 and train_fraction < 1). Returns sorted int64 index arrays (train, val).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    n_train = int(round(train_fraction * n))
    if train_fraction < 1.0 and n >= 2:
        n_train = min(max(n_train, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_train]).astype(np.int64), np.sort(perm[n_train:]).astype(np.int64)


def inherited_split(prev_train_hashes: Sequence[str], prev_val_hashes: Sequence[str], hashes: Sequence[str],
                    seed: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Split that keeps the previous iteration's sides (2.3.6, "inherited").

    A frame whose hash was in the previous training (validation) set stays in training
    (validation); only frames new to this iteration are split at random with
    ``train_fraction`` (:func:`random_split` with ``seed``). Returns sorted int64 index
    arrays (train, val) into ``hashes``.
    """
    prev_t, prev_v = set(map(str, prev_train_hashes)), set(map(str, prev_val_hashes))
    hashes = [str(h) for h in hashes]
    side = np.full(len(hashes), -1, dtype=np.int64)  # 1 train, 0 val, -1 new
    for i, h in enumerate(hashes):
        if h in prev_t:
            side[i] = 1
        elif h in prev_v:
            side[i] = 0
    new = np.flatnonzero(side < 0)
    if len(new):
        tr, _ = random_split(len(new), seed, train_fraction)
        side[new] = 0
        side[new[tr]] = 1
    return np.flatnonzero(side == 1).astype(np.int64), np.flatnonzero(side == 0).astype(np.int64)


