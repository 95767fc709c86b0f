"""Uncertainty of an ensemble: member energies, their spread σ, and the μ + nσ threshold (2.3.2).

σ of a frame is the standard deviation (ddof = 0, numpy's default) of the K members'
energies, in eV. The threshold is not absolute: it is μ_UQ + n_sigma · σ_UQ of the σ
values of the first ``n_first`` frames of the SMD run (1000 steps in the paper),
because the UQ scale drifts between iterations.
"""
from __future__ import annotations

import numpy as np

from ..dataset import Frames

__all__ = ["member_energies", "sigma", "threshold"]


def member_energies(ensemble, frames: Frames, batch_size: int = 256) -> np.ndarray:
    """Every member's energy on every frame.

    Parameters
    ----------
    ensemble : :class:`rarelearn.models.ani.EnsembleModel`
    frames : F frames (labels not needed)
    batch_size : frames per TorchANI call

    Returns
    -------
    (K, F) float64 eV
    """
    return ensemble.energies(frames.numbers, frames.positions, batch_size=batch_size)


def sigma(energies: np.ndarray) -> np.ndarray:
    """Standard deviation across members (axis 0, ddof = 0) of (K, F) energies → (F,) eV."""
    e = np.asarray(energies, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"energies must be (K, F), got shape {e.shape}")
    return e.std(axis=0)


def threshold(sigma: np.ndarray, n_first: int = 1000, n_sigma: float = 3.0) -> float:
    """UQ threshold μ + n_sigma · s over the first ``n_first`` σ values (all if fewer).

    μ and s are the mean and standard deviation (ddof = 0) of ``sigma[:n_first]``.

    Raises
    ------
    ValueError
        if n_sigma ≤ 0, n_first < 1, ``sigma`` is empty, or the window holds a non-finite value.
    """
    if not n_sigma > 0:
        raise ValueError(f"n_sigma must be > 0, got {n_sigma}")
    if n_first < 1:
        raise ValueError(f"n_first must be >= 1, got {n_first}")
    s = np.asarray(sigma, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("cannot set a UQ threshold from an empty σ series")
    w = s[:int(n_first)]
    if not np.isfinite(w).all():
        raise ValueError("σ series holds non-finite values in the threshold window")
    return float(w.mean() + n_sigma * w.std())
