"""Committee statistics of hyperactive learning (HAL): the energy spread σ and its
gradient, the relative force uncertainty f_i and the stop-and-label criteria (paper
eq. 6–10; see :mod:`rarelearn.learning.hal`). Units: eV, Å."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HALError", "StopCriterion", "committee_stats", "max_softmax", "max_stop",
           "relative_force_uncertainty", "softmax_stop"]


class HALError(ValueError):
    """Bad HAL parameters or a committee calculator that does not fill the results contract."""


# ---------------------------------------------------------------------- committee statistics
def _check_committee_arrays(energies, forces) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(energies, dtype=np.float64)
    f = np.asarray(forces, dtype=np.float64)
    if e.ndim != 1 or e.size == 0:
        raise HALError(f"member energies must have shape (K,), got {e.shape}")
    if f.ndim != 3 or f.shape[0] != e.shape[0] or f.shape[2] != 3:
        raise HALError(f"member forces must have shape (K={e.shape[0]}, N, 3), got {f.shape}")
    return e, f


def committee_stats(energies, forces) -> dict:
    """Committee mean, spread and the gradient of the spread.

    Parameters
    ----------
    energies : (K,) member energies, eV
    forces : (K, N, 3) member forces (= −∇E_k), eV/Å

    Returns
    -------
    dict with
      mean_energy : float, Ē (eV)
      sigma : float, σ = std of the member energies, ddof=0 (eV)
      mean_forces : (N, 3), F̄ (eV/Å)
      grad_sigma : (N, 3), ∇σ = ∇σ²/(2σ) with ∇σ² = (2/K) Σ_k (E_k − Ē)(F̄ − F_k) (eV/Å).
          Zero where σ = 0 (K = 1 or identical members), where σ is not differentiable.
          For σ > 0, |∇σ| ≤ rms_k |F_k − F̄| (Cauchy–Schwarz), so it stays bounded as σ → 0.
    """
    e, f = _check_committee_arrays(energies, forces)
    k = e.shape[0]
    mean_e = float(e.mean())
    d = e - mean_e
    sigma = float(np.sqrt(np.mean(d * d)))
    mean_f = f.mean(axis=0)
    grad_sigma2 = (2.0 / k) * np.einsum("k,kia->ia", d, mean_f[None] - f)
    if sigma > 0.0 and np.isfinite(sigma):
        grad_sigma = grad_sigma2 / (2.0 * sigma)
    else:
        grad_sigma = np.zeros_like(mean_f)
    return {"mean_energy": mean_e, "sigma": sigma, "mean_forces": mean_f, "grad_sigma": grad_sigma}


# ---------------------------------------------------------------------- stop criterion
def relative_force_uncertainty(forces, eps: float = 0.2) -> np.ndarray:
    """Per-atom relative force uncertainty f_i (paper eq. 6).

    f_i = mean_k ‖F_i^k − F̄_i‖ / (‖F̄_i‖ + eps); forces (K, N, 3) in eV/Å, eps in eV/Å.
    Returns (N,).
    """
    f = np.asarray(forces, dtype=np.float64)
    if f.ndim != 3 or f.shape[2] != 3 or f.shape[0] == 0:
        raise HALError(f"member forces must have shape (K, N, 3), got {f.shape}")
    if not eps > 0.0:
        raise HALError(f"eps must be > 0 eV/Å, got {eps}")
    mean_f = f.mean(axis=0)
    spread = np.linalg.norm(f - mean_f[None], axis=2).mean(axis=0)
    return spread / (np.linalg.norm(mean_f, axis=1) + eps)


def max_softmax(f) -> float:
    """max_i exp(f_i) / Σ_j exp(f_j), computed stably. 1/N when all f_i are equal."""
    f = np.asarray(f, dtype=np.float64).ravel()
    if f.size == 0:
        raise HALError("softmax of an empty array")
    z = np.exp(f - f.max())
    return float(z.max() / z.sum())


def softmax_stop(f, s_tol: float = 0.5) -> bool:
    """Paper eq. 8: True when max_i softmax(f)_i > s_tol.

    Note: with N atoms the smallest possible value is 1/N, so a 1-atom system always
    triggers and a 2-atom system triggers as soon as f differ at all (s_tol = 0.5).
    """
    return max_softmax(f) > s_tol


def max_stop(f, f_tol: float) -> bool:
    """Paper eq. 7: True when max_i f_i > f_tol."""
    f = np.asarray(f, dtype=np.float64)
    if f.size == 0:
        raise HALError("max of an empty array")
    return bool(f.max() > f_tol)


@dataclass(frozen=True)
class StopCriterion:
    """Stop-and-label rule on the committee's member forces.

    kind : "softmax" (max_i softmax(f)_i > tol, default tol 0.5) or "max" (max_i f_i > tol)
    tol : the tolerance (s_tol or f_tol); None → 0.5 for "softmax" (required for "max")
    eps : regulariser ε of f_i, eV/Å
    """

    kind: str = "softmax"
    tol: float | None = None
    eps: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in ("softmax", "max"):
            raise HALError(f"unknown stop criterion kind {self.kind!r}; known: 'softmax', 'max'")
        if self.tol is None:
            if self.kind == "max":
                raise HALError("stop criterion kind 'max' needs a tolerance f_tol")
            object.__setattr__(self, "tol", 0.5)
        if not np.isfinite(self.tol):
            raise HALError(f"stop tolerance must be finite, got {self.tol}")
        if not self.eps > 0.0:
            raise HALError(f"eps must be > 0 eV/Å, got {self.eps}")

    def score(self, forces) -> float:
        """The value compared with ``tol``: max softmax(f) or max f."""
        f = relative_force_uncertainty(forces, self.eps)
        return max_softmax(f) if self.kind == "softmax" else float(f.max())

    def score_from_f(self, f) -> float:
        f = np.asarray(f, dtype=np.float64)
        return max_softmax(f) if self.kind == "softmax" else float(f.max())

    def __call__(self, forces) -> bool:
        """True when the configuration with member forces (K, N, 3) should be labelled."""
        return bool(self.score(forces) > self.tol)


