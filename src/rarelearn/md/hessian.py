"""The constrained Hessian of a structure whose pulled distance is held fixed (the COGEF
scan's stability check, :mod:`rarelearn.md.cogef`; the soft-mode frames of the COGEF
sampler, :mod:`rarelearn.learning.soft_modes`). Units: eV, Å."""
from __future__ import annotations

import numpy as np

__all__ = ["constrained_modes", "lowest_constrained_mode"]


def constrained_modes(atoms, calculator, pull: tuple[int, int], h: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (eV/Å², ascending, (M,)) and modes ((M, N, 3), unit norm) of the Hessian of
    ``atoms`` with the distance of ``pull`` fixed, in the space orthogonal to translations,
    rotations and the pulled distance (M = 3N − 7, or 3N − 6 for a linear molecule):
    central finite differences of the forces, 6N force calls, step ``h`` Å."""
    i, j = int(pull[0]), int(pull[1])
    a = atoms.copy()
    a.set_constraint()
    a.calc = calculator
    x0 = a.positions.copy()
    n = len(a)
    hess = np.empty((3 * n, 3 * n))
    for c in range(3 * n):
        cols = []
        for sign in (1.0, -1.0):
            x = x0.copy().ravel()
            x[c] += sign * h
            a.positions = x.reshape(n, 3)
            cols.append(a.get_forces().ravel())
        hess[:, c] = -(cols[0] - cols[1]) / (2 * h)
    a.positions = x0
    hess = 0.5 * (hess + hess.T)
    centred = x0 - x0.mean(axis=0)
    fixed = []
    for d in range(3):
        t = np.zeros((n, 3))
        t[:, d] = 1.0
        fixed.append(t.ravel())
        axis = np.zeros(3)
        axis[d] = 1.0
        fixed.append(np.cross(axis, centred).ravel())
    u = (x0[j] - x0[i]) / np.linalg.norm(x0[j] - x0[i])
    stretch = np.zeros((n, 3))
    stretch[i], stretch[j] = -u, u
    fixed.append(stretch.ravel())
    basis, sv, _ = np.linalg.svd(np.array(fixed).T, full_matrices=False)
    q = basis[:, sv > 1e-8 * sv.max()]     # a linear molecule has a rotation less
    # an orthonormal basis of the rest: the free, internal directions
    pw, pv = np.linalg.eigh(np.eye(3 * n) - q @ q.T)
    free = pv[:, pw > 0.5]
    w, v = np.linalg.eigh(free.T @ hess @ free)
    return w, (free @ v).T.reshape(-1, n, 3)


def lowest_constrained_mode(atoms, calculator, pull: tuple[int, int], h: float = 0.005) -> tuple[float, np.ndarray]:
    """The lowest eigenvalue (eV/Å²) and its mode ((N, 3), unit norm) of
    :func:`constrained_modes` (0 and no displacement when nothing is free: a dimer)."""
    w, modes = constrained_modes(atoms, calculator, pull, h)
    if len(w) == 0:
        return 0.0, np.zeros((len(atoms), 3))
    return float(w[0]), modes[0]
