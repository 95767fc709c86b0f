"""Soft-mode frames: the potential's COGEF images near its maximum, displaced along their
softest constrained mode.

Where a chain pulled at both ends breaks is decided by a curvature: the force maximum is
where the constrained energy stops being a minimum along one internal mode (for hexane, one
terminal bond longer and the other shorter) and the intact branch ends. A potential that is
right on its own path images, energies and forces, can still be wrong about that curvature:
its path then stays intact too long and its maximum is too high (measured: `benchmarks/
README.md`, "Soft modes"). A relaxed image's forces say nothing about it (they vanish along
the mode), and noisy copies rarely point along it. Frames displaced along the mode, labelled,
do. Units: eV, Å.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..dataset import Frames
from ..md.hessian import constrained_modes

__all__ = ["continued_chain", "descent_starts", "descent_starts_beyond", "soft_mode_frames", "window_images"]


def window_images(path: Frames, window: float, n_images: int) -> np.ndarray:
    """Indices of at most ``n_images`` intact images of a COGEF path (extras ``extension``,
    ``intact``, ``potential_energy``), spread evenly over the ``window`` Å of extension
    up to the intact branch's energy maximum (the maximum included)."""
    ext = np.asarray(path.extras["extension"], dtype=float)
    intact = np.asarray(path.extras.get("intact", np.ones(len(path))), dtype=float) > 0.5
    if not intact.any() or n_images <= 0:
        return np.zeros(0, dtype=int)
    energy = np.asarray(path.extras["potential_energy"], dtype=float)
    top = int(np.flatnonzero(intact)[np.argmax(energy[intact])])
    inside = np.flatnonzero(intact & (ext >= ext[top] - window) & (ext <= ext[top] + 1e-9))
    inside = inside[np.argsort(ext[inside])]
    if len(inside) <= n_images:
        return inside
    return inside[np.linspace(0, len(inside) - 1, n_images).round().astype(int)]


def soft_mode_frames(path: Frames, calculator, pull: tuple[int, int], *, window: float = 0.3,
                     n_images: int = 10, amplitudes: Sequence[float] = (0.1, 0.2), n_modes: int = 1) -> Frames:
    """Unlabelled frames: images of ``path`` (:func:`window_images`) displaced by ± each
    amplitude (Å, at the atom that moves most) along each of their ``n_modes`` softest
    constrained modes under ``calculator`` (the potential;
    :func:`rarelearn.md.hessian.constrained_modes`, 6N force calls per image). The pulled
    distance changes only to second order. Extras: ``extension`` (the image's),
    ``soft_mode_eigenvalue`` (eV/Å²) and ``soft_mode_amplitude`` (signed, Å); source
    ``soft-mode``."""
    from ase import Atoms

    picks = window_images(path, window, n_images)
    positions, ext, eig, amp = [], [], [], []
    for k in picks:
        atoms = Atoms(numbers=path.numbers, positions=path.positions[k])
        w, modes = constrained_modes(atoms, calculator, pull)
        for m in range(min(n_modes, len(w))):
            mode = modes[m] / np.linalg.norm(modes[m], axis=1).max()
            for a in amplitudes:
                for sign in (1.0, -1.0):
                    positions.append(path.positions[k] + sign * a * mode)
                    ext.append(float(path.extras["extension"][k]))
                    eig.append(float(w[m]))
                    amp.append(sign * a)
    n = len(positions)
    if n == 0:
        return Frames(numbers=path.numbers, positions=np.zeros((0, len(path.numbers), 3)))
    return Frames(numbers=path.numbers, positions=np.array(positions), source=np.full(n, "soft-mode", dtype=object),
                  extras={"extension": np.array(ext), "soft_mode_eigenvalue": np.array(eig),
                          "soft_mode_amplitude": np.array(amp)})


def descent_starts(path: Frames, calculator, pull: tuple[int, int], *, n_images: int = 3, window: float = 0.05,
                   amplitude: float = 0.1) -> Frames:
    """Where the labeller's way down from the potential's COGEF maximum begins (sampler option
    ``descent_steps``): ``n_images`` images of ``path`` over the ``window`` Å up to its
    maximum (:func:`window_images`), each displaced by +``amplitude`` Å along its softest
    constrained mode under ``calculator`` (:func:`soft_mode_frames`; one sign only: the
    other is the mirror image for a chain pulled at both ends). Relaxed a few steps by the
    labeller under the pull's constraint, these show the potential whether the chain breaks
    there and how far the energy falls: the curvature that decides where its intact branch
    ends, which a relaxed image's forces do not carry. Source ``soft-mode``."""
    frames = soft_mode_frames(path, calculator, pull, window=window, n_images=n_images, amplitudes=(amplitude,))
    return frames.subset(np.arange(0, len(frames), 2))


def continued_chain(path: Frames, calculator, pull: tuple[int, int], *, beyond: float, n_images: int,
                    fmax: float = 0.01, optimizer: str = "BFGS", max_steps: int = 500) -> Frames:
    """The potential's intact chain continued past its COGEF maximum: from the intact image at
    the maximum of ``path`` (extras ``extension``, ``intact``, ``potential_energy``), the pulled
    atoms moved apart ``n_images`` times by ``beyond`` / ``n_images`` Å (mass-weighted along
    their axis, as the scan steps), each image relaxed by ``calculator`` under the pulled
    distance's constraint, without the scan's stable-branch check: a relaxation from the
    symmetric chain has no gradient along the antisymmetric mode and stays on it (the
    symmetric saddle path past the potential's own break). Unlabelled; extras ``extension``
    (the path's measure, Å) and ``potential_energy`` (eV)."""
    from ase import Atoms
    from ase.constraints import FixBondLength

    from ..md.cogef import pulled_apart, relaxed

    i, j = int(pull[0]), int(pull[1])
    top = window_images(path, 0.0, 1)
    if len(top) == 0 or n_images <= 0 or not beyond > 0:
        return Frames(numbers=path.numbers, positions=np.zeros((0, len(path.numbers), 3)))
    k = int(top[0])
    a = Atoms(numbers=path.numbers, positions=path.positions[k])
    masses = a.get_masses()
    ds = beyond / n_images
    ext0 = float(path.extras["extension"][k])
    positions, ext, energy = [], [], []
    for step in range(1, n_images + 1):
        a.set_constraint()
        a.positions = pulled_apart(a.positions, masses, (i, j), ds)
        a.set_constraint(FixBondLength(i, j))
        a, _ = relaxed(a, calculator, fmax, optimizer, max_steps)
        positions.append(a.positions.copy())
        ext.append(ext0 + step * ds)
        energy.append(float(a.get_potential_energy()))
    n = len(positions)
    return Frames(numbers=path.numbers, positions=np.array(positions), source=np.full(n, "soft-mode", dtype=object),
                  extras={"extension": np.array(ext), "potential_energy": np.array(energy), "intact": np.ones(n)})


def descent_starts_beyond(path: Frames, calculator, pull: tuple[int, int], *, beyond: float, n_images: int = 3,
                          amplitude: float = 0.1) -> Frames:
    """Starts of the labeller's way down *past* the potential's COGEF maximum (sampler option
    ``descent_beyond``): the ``n_images`` images of :func:`continued_chain` (up to ``beyond``
    Å past the maximum), each displaced by +``amplitude`` Å along its softest constrained mode
    under ``calculator``, as :func:`descent_starts` does below the maximum.

    Why: a potential whose chain gives way *early* has no intact images past its maximum, so
    every start below it lies where the labeller's chain still holds and every descent goes
    back to the intact chain; starts on both sides of the maximum bracket the labeller's
    break. Measured once (hexane, benchmarks/README.md, "Bracketing the break"): it did not
    stop the next committee from holding on too long, which it does on an asymmetric branch
    that these descents from the symmetric chain do not reach. Source ``soft-mode``."""
    chain = continued_chain(path, calculator, pull, beyond=beyond, n_images=n_images)
    if len(chain) == 0:
        return chain
    frames = soft_mode_frames(chain, calculator, pull, window=beyond + 1e-6, n_images=n_images,
                              amplitudes=(amplitude,))
    return frames.subset(np.arange(0, len(frames), 2))
