"""COGEF: the constrained-geometry profile of a pulled bond (Beyer, J. Chem. Phys. 2000).

Fix the distance between the two pulled atoms at d0 + Δ, relax every other degree of
freedom, step Δ up. The relaxed energy E(Δ) (relative to the relaxed start) rises while
the molecule is stretched, and drops when a bond breaks; its maximum E_max, reached at
the end of the intact branch, is the barrier that a quasi-static pull has to overcome,
and F(Δ) = dE/dΔ (the constraint force) the force the bond withstands. Unlike one SMD
replica, the profile is deterministic: the same start, calculator and settings give the
same E_max, so it resolves differences far below the ~4 kcal/mol scatter of one SMD E_a.

Works with any ASE calculator: the labeller (the reference profile) or a potential.

How
---
* The start is relaxed without constraint; every image is the previous one with the
  pulled atoms moved apart by the step, mass-weighted along their axis (as ase-cogef's
  ``shift_atoms_mass_weighted``), then relaxed under :class:`ase.constraints.FixBondLength`.
* The break is the shared rule of :mod:`rarelearn.chem.breaks` (a bond of the start past 2× its
  covalent radii), or the drop: an image whose energy lies more than ``drop_tol`` (0.5 eV)
  below an intact image at a smaller extension has left the intact branch, whatever its
  bond lengths (along the intact branch E only rises with Δ, by F·Δ at most). The drop
  catches breaks whose bonds stay below 2× the radii: a hexane potential that stretches
  both second C–C bonds alike and lets them go at once, leaving ethyl + ethylene + ethyl
  with both broken bonds at 2.7–3.0 Å (C–C counts as broken past 3.04 Å), had been
  counted intact for another 1.5 Å. The broken bond named is then the one stretched most
  (relative to its break length) in the first image past the drop. The scan goes on
  ``post_break_extension`` past the break so that the post-break plateau is measured
  (fragments apart: a reference is flat there; a potential whose fragments still attract
  rises), or stops at ``max_extension``.
* **Refinement of E_max**: around the highest intact image k the step is halved and new
  images relaxed from image k at Δ_k + h (and Δ_k − h when k is not the last intact
  image), and so on. When E_max sits at the end of the intact branch (the drop), this is a
  bisection on where the branch ends: an image past it relaxes onto the broken branch and
  is not counted. It stops when one halving changes E_max by less than ``refine_tol``
  *and* F(Δ_k)·h < ``refine_tol`` (E cannot rise faster than F beyond image k within h, so
  the true maximum is within ``refine_tol`` of the one found). Each round is recorded in
  :attr:`CogefProfile.refinement`.
* F_max is the largest constraint force of the intact images, refined the same way: new
  images at ±h around it, the vertex of the parabola through the three, h halved until
  the vertex moves by less than ``force_tol``.
* **The stable branch** (``stable_branch``, default): an image is a minimum under the
  constraint only while the constrained Hessian (finite differences of the forces, with
  translations, rotations and the pulled distance projected out) has no negative
  eigenvalue. Every intact image is checked; where the lowest
  eigenvalue is below ``-instability_tol`` the image sits on a saddle, and it is displaced
  along that mode both ways (0.1 Å at the atom that moves most), both are relaxed, and the
  lower one is the image (the scan goes on from it). Why: a chain pulled at both ends
  stretches two equivalent bonds alike, and from its force maximum on (where each bond
  passes its inflection) that symmetric path is a saddle: an antisymmetric mode (one bond
  longer, the other shorter) has negative curvature. A relaxation that starts exactly on
  the symmetric path has no gradient along that mode and stays on the saddle. GFN2-xTB's
  hexane, pulled at the terminal carbons from the built all-trans molecule, stayed on it
  from Δ = 2.01 Å (F_max) to 2.47 Å, and its E_max read 7.88 eV; the lowest eigenvalue
  was −0.07 eV/Å² at Δ 2.0, −1.9 at 2.2 and −4.7 at 2.45. Starts displaced by 0.001 Å
  left the saddle after various distances and gave 7.28–7.38 eV; MD frames as starts,
  7.01–7.39 eV: E_max measured there was how long the optimizer stayed on a saddle, not a
  property of the molecule. On the stable branch it is 5.75 eV at Δ = 1.965 Å (just past
  the force maximum) from any of those starts. ``stable_branch=False`` is that old scan.
* **The threshold** (``instability_tol``, 0.005 eV/Å²): the branch ends where the lowest
  eigenvalue crosses zero, the scan where it falls below ``-instability_tol``; in between E
  still rises by F_max per Å. GFN2-xTB's hexane: the eigenvalue falls 3–5 eV/Å² per Å
  there, and E_max read 5.833 eV with a threshold of 0.05 eV/Å² (Δ 1.982 Å), 5.780 with
  0.02, 5.755 with 0.005 (Δ 1.965 Å), 1.8 kcal/mol apart; the potentials' members, whose
  chains break from an asymmetric branch further on, read the same E_max at all three
  (benchmarks/cogef_threshold.py). 0.005 is above the finite-difference noise (no false
  saddle on the way up in those scans).
* **E_max past the force maximum** (:attr:`CogefProfile.e_max_past_f_max`): where a chain
  snaps (its energy drops) E_max lies just past F_max. Where a bond lets go gradually, the
  intact branch ends only when it passes its break length, and E_max is the energy there on
  a curve that still rises: under GFN2-xTB, propane's and butane's terminal bond passes its
  inflection at 1.92 Å (F_max) and stretches on to 3.04 Å with the energy rising by another
  37 and 24 kcal/mol (restricted tight binding lets a C–C bond go slowly); hexane's snaps
  from 1.92 to 3.27 Å in one step (benchmarks/alkane_breaks.py). E at F_max (``e_at_f_max``)
  is recorded beside E_max, so a comparison can tell the two apart.
* A relaxation whose calculator fails (an SCF that does not converge) ends the scan
  there, with the reason in :attr:`CogefProfile.stop_reason`; a failed refinement image is
  left out.

Why not ase-cogef: its newest release (23.6.1) does not import with ASE 3.29
(``ModuleNotFoundError: No module named 'ase.neb'``, a module ASE has removed), and its
``COGEF1D`` keeps its state in trajectory files in a working directory. What it does for
a 1-D pull is the loop above, on ASE's own constraint and optimizers.

Units: eV, Å; E relative to the relaxed start.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..chem.breaks import BreakReport, find_break
from ..dataset import Frames
from ..units import EV_PER_KCAL_MOL
from .cogef_refine import first_break, refined_energy_max, refined_force_max
from .hessian import lowest_constrained_mode

__all__ = ["CogefProfile", "cogef_profile", "cogef_settings", "energy_at_f_max", "lowest_constrained_mode", "pulled_apart",
           "relaxed", "OPTIMIZERS"]

OPTIMIZERS = ("BFGS", "LBFGS", "FIRE", "BFGSLineSearch")


@dataclass
class _Image:
    extension: float
    energy: float          # absolute, eV
    force: float           # constraint force along the pull, eV/Å
    positions: np.ndarray
    forces: np.ndarray     # unconstrained forces, eV/Å
    intact: bool
    refined: bool
    converged: bool


@dataclass
class CogefProfile:
    """A COGEF profile.

    Arrays are in order of extension (coarse and refinement images together).

    Attributes
    ----------
    pull : (i, j) the atoms whose distance is fixed
    d0 : their distance in the relaxed start, Å
    e0 : energy of the relaxed start, eV (absolute)
    extension : (P,) Δ, Å
    energy : (P,) E(Δ) − e0, eV
    force : (P,) constraint force dE/dΔ, eV/Å (positive while the molecule resists)
    intact : (P,) bool, before the break
    refined : (P,) bool, an image of the refinement
    frames : the relaxed images (positions, absolute energies and unconstrained forces
        in ``extras`` ``cogef_energy``/``potential_energy``; see :func:`cogef_profile`)
    e_max, extension_at_max : the maximum of E over the intact images (eV, Å)
    f_max, extension_at_f_max : the largest constraint force, parabola-refined (eV/Å, Å)
    brk : the break (:class:`rarelearn.chem.breaks.BreakReport`, ``index`` into the arrays)
    refinement : one dict per halving: ``step``, ``e_max``, ``extension_at_max``, ``bound``
    refine_converged : whether the stop criterion was met within ``max_refinements``
    unconverged_images : images whose relaxation hit the step limit
    unstable_images : one dict per image relaxed onto a saddle and moved off it (``stable_branch``):
        ``extension``, ``eigenvalue`` (eV/Å²), ``energy_drop`` (eV), ``intact`` (the image
        it became)
    stop_reason : why the scan ended: ``max_extension``, ``past the break`` or a failed calculation
    """

    pull: tuple[int, int]
    d0: float
    e0: float
    extension: np.ndarray
    energy: np.ndarray
    force: np.ndarray
    intact: np.ndarray
    refined: np.ndarray
    frames: Frames
    e_max: float
    extension_at_max: float
    f_max: float
    extension_at_f_max: float
    brk: BreakReport
    refinement: list = field(default_factory=list)
    refine_converged: bool = True
    unconverged_images: int = 0
    stop_reason: str = "max_extension"
    unstable_images: list = field(default_factory=list)

    @property
    def broke(self) -> bool:
        return self.brk.broke

    @property
    def break_extension(self) -> float:
        """Δ of the first broken image (Å), NaN when nothing broke."""
        return float(self.extension[self.brk.index]) if self.broke else math.nan

    @property
    def post_break_rise(self) -> float:
        """E(last image) − E(first broken image), eV: ~0 when the fragments no longer
        interact, positive when they still attract; NaN when nothing broke."""
        if not self.broke:
            return math.nan
        return float(self.energy[-1] - self.energy[self.brk.index])

    @property
    def e_at_f_max(self) -> float:
        """E at the force maximum (eV, relative to the start; the intact images interpolated
        linearly): where the chain gives way, the pulled bond past its inflection."""
        return energy_at_f_max(self.extension, self.energy, self.intact, self.extension_at_f_max)

    @property
    def e_max_past_f_max(self) -> float:
        """E_max − E at the force maximum (eV): ~0 when the chain snaps at its force maximum
        (hexane under GFN2-xTB, the energy drops), large when the bond lets go gradually and
        the intact branch ends only where it passes its break length, E still rising (propane
        and butane under GFN2-xTB: 37 and 24 kcal/mol of E_max lie past the force maximum)."""
        return float(self.e_max - self.e_at_f_max)

    @property
    def post_break_force(self) -> float:
        """Mean constraint force over the broken images, eV/Å (NaN when nothing broke)."""
        if not self.broke:
            return math.nan
        return float(np.mean(self.force[self.brk.index:]))

    def summary(self) -> dict:
        """JSON record: the scalars, the break, the refinement and the profile arrays."""
        return {
            "pull": list(self.pull), "d0": self.d0, "e0": self.e0,
            "e_max": self.e_max, "extension_at_max": self.extension_at_max,
            "f_max": self.f_max, "extension_at_f_max": self.extension_at_f_max,
            "e_at_f_max": self.e_at_f_max, "e_max_past_f_max": self.e_max_past_f_max,
            **self.brk.as_dict(), "break_extension": self.break_extension,
            "post_break_rise": self.post_break_rise, "post_break_force": self.post_break_force,
            "refinement": self.refinement, "refine_converged": self.refine_converged,
            "unconverged_images": self.unconverged_images, "stop_reason": self.stop_reason,
            "unstable_images": self.unstable_images,
            "left_saddle_at": self.unstable_images[0]["extension"] if self.unstable_images else None,
            "n_images": int(self.extension.size),
            "extension": self.extension.tolist(), "energy": self.energy.tolist(),
            "force": self.force.tolist(), "intact": self.intact.tolist(), "refined": self.refined.tolist(),
        }


def energy_at_f_max(extension, energy, intact, extension_at_f_max: float) -> float:
    """E at ``extension_at_f_max`` on a profile's intact images (interpolated linearly; NaN
    without intact images)."""
    x, e = np.asarray(extension, float), np.asarray(energy, float)
    keep = np.asarray(intact, bool)
    if not keep.any():
        return math.nan
    order = np.argsort(x[keep])
    return float(np.interp(float(extension_at_f_max), x[keep][order], e[keep][order]))


def _optimizer(name: str):
    import ase.optimize

    if name not in OPTIMIZERS:
        raise ValueError(f"cogef optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")
    return getattr(ase.optimize, name)


def relaxed(atoms, calculator, fmax: float, optimizer: str = "BFGS", max_steps: int = 2000):
    """A copy of ``atoms`` relaxed with ``calculator`` (its constraints kept) and whether the
    optimizer converged within ``max_steps``."""
    a = atoms.copy()
    a.calc = calculator
    ok = _optimizer(optimizer)(a, logfile=None).run(fmax=fmax, steps=max_steps)
    return a, bool(ok)


def pulled_apart(positions: np.ndarray, masses: np.ndarray, pull: tuple[int, int], ds: float) -> np.ndarray:
    """``positions`` with the two pulled atoms moved ``ds`` Å further apart along their axis,
    mass-weighted (the lighter atom moves more; as ase-cogef's ``shift_atoms_mass_weighted``):
    one step of a COGEF scan before its relaxation."""
    i, j = int(pull[0]), int(pull[1])
    out = np.array(positions, dtype=float, copy=True)
    u = out[j] - out[i]
    u /= np.linalg.norm(u)
    w_i, w_j = masses[j] / (masses[i] + masses[j]), masses[i] / (masses[i] + masses[j])
    out[i] -= ds * w_i * u
    out[j] += ds * w_j * u
    return out


def _constraint_force(forces: np.ndarray, positions: np.ndarray, i: int, j: int) -> float:
    """Force the constraint holds against, along the pull (eV/Å): ((F_i − F_j)·u)/2, u from i to j."""
    u = positions[j] - positions[i]
    u = u / np.linalg.norm(u)
    return float(np.dot(forces[i] - forces[j], u) / 2.0)


def cogef_settings(cogef_cfg: dict) -> dict:
    """The config's ``cogef:`` block as :func:`cogef_profile`'s keyword arguments (the scan
    every step and benchmark runs with the campaign's settings)."""
    c = cogef_cfg
    return dict(step=c["step"], max_extension=c["max_extension"], post_break_extension=c["post_break_extension"],
                fmax=c["fmax"], optimizer=c["optimizer"], max_opt_steps=c["max_opt_steps"],
                refine_tol_kcal=c["refine_tol_kcal"], max_refinements=c["max_refinements"],
                stable_branch=c.get("stable_branch", True), instability_tol=c.get("instability_tol", 0.005))


def cogef_profile(atoms, calculator, pull: tuple[int, int], *, step: float = 0.1, max_extension: float = 4.0,
                  post_break_extension: float = 1.0, fmax: float = 0.01, optimizer: str = "BFGS",
                  max_opt_steps: int = 2000, refine_tol_kcal: float = 0.1, force_tol: float = 1e-3,
                  max_refinements: int = 12, drop_tol: float = 0.5,
                  relax_start: bool = True, stable_branch: bool = True, instability_tol: float = 0.005,
                  label_as: str | None = None,
                  progress: Callable[[str], None] | None = None) -> CogefProfile:
    """The COGEF profile of pulling atoms ``pull = (i, j)`` apart.

    Parameters
    ----------
    atoms : ase.Atoms, the molecule (relaxed here first unless ``relax_start`` is False)
    calculator : any ASE calculator (energy and forces)
    pull : the two atoms whose distance is fixed and stepped up
    step : Δ step of the scan, Å
    max_extension : largest Δ scanned, Å
    post_break_extension : how far past the break the scan goes on, Å
    fmax : force convergence of every relaxation, eV/Å
    optimizer : an ASE optimizer name (:data:`OPTIMIZERS`)
    max_opt_steps : step limit of one relaxation (an image that hits it is counted in
        ``unconverged_images``)
    refine_tol_kcal : convergence of E_max, kcal/mol (see the module's docstring)
    force_tol : convergence of F_max, eV/Å
    max_refinements : most halvings of the step
    drop_tol : an image this far (eV) below an intact image at a smaller extension counts as
        broken (the module's docstring)
    stable_branch : move an intact image off a saddle (the module's docstring); False:
        follow whatever path the relaxations give
    instability_tol : eV/Å², the lowest constrained Hessian eigenvalue below ``-instability_tol``
        makes an image a saddle
    label_as : name of the labeller when ``calculator`` is the reference: the frames are
        then labelled (energy, forces, status ok); None: unlabelled (a potential's path)
    progress : optional callable receiving one-line progress messages

    Returns
    -------
    :class:`CogefProfile`
    """
    from ase.constraints import FixBondLength

    i, j = int(pull[0]), int(pull[1])
    n = len(atoms)
    if not (0 <= i < n and 0 <= j < n) or i == j:
        raise ValueError(f"cogef pull atoms {pull} must be two different indices below {n}")
    if not step > 0 or not max_extension > 0:
        raise ValueError(f"cogef step ({step}) and max_extension ({max_extension}) must be > 0")
    tol = refine_tol_kcal * EV_PER_KCAL_MOL
    start = atoms.copy()
    start.set_constraint()
    if relax_start:
        start, _ = relaxed(start, calculator, fmax, optimizer, max_opt_steps)
    start.calc = calculator
    e0 = float(start.get_potential_energy())
    d0 = float(start.get_distance(i, j))
    masses = start.get_masses()
    numbers, start_pos = start.numbers.copy(), start.positions.copy()

    failures: list[str] = []

    def as_image(a, refined: bool, converged: bool) -> _Image:
        """A relaxed structure (calculator attached) as a profile image: intact unless a bond
        is past its break length or its energy has dropped below the intact branch's."""
        f = a.get_forces(apply_constraint=False).copy()
        pos = a.positions.copy()
        ext, energy = float(a.get_distance(i, j)) - d0, float(a.get_potential_energy())
        below = [im.energy for im in images if im.intact and im.extension < ext - 1e-9]
        intact = (not find_break(numbers, pos[None], start_pos).broke
                  and not (below and energy < max(below) - drop_tol))
        return _Image(ext, energy, _constraint_force(f, pos, i, j), pos, f, intact, refined, converged)

    def image_at(base: _Image, ds: float, refined: bool) -> _Image | None:
        """``base`` with the pulled atoms moved ``ds`` further apart, relaxed under the constraint."""
        if base.extension + ds <= 1e-9:
            return None                      # refinement never compresses past the start
        a = start.copy()
        a.positions = pulled_apart(base.positions, masses, (i, j), ds)
        a.set_constraint(FixBondLength(i, j))
        try:
            a, ok = relaxed(a, calculator, fmax, optimizer, max_opt_steps)
            im = as_image(a, refined, ok)
            if stable_branch:
                im = off_saddle(im, a, refined)
            return im
        except Exception as exc:  # a calculator failure (SCF) ends the scan, not the job
            failures.append(f"calculation failed at Δ = {base.extension + ds:.4f} Å: {exc}")
            if progress:
                progress(f"cogef: {failures[-1]}")
            return None

    unstable: list[dict] = []

    def off_saddle(im: _Image, a, refined: bool) -> _Image:
        """``im`` (relaxed structure ``a``), or, where it is an intact image on a saddle,
        the lower of the two relaxations from it displaced along the unstable mode
        (repeated, at most 3 times, while the result is still a saddle)."""
        for _ in range(3):
            if not im.intact:
                return im
            w, mode = lowest_constrained_mode(a, calculator, (i, j))
            if w >= -instability_tol:
                return im
            mode = mode * (0.1 / np.linalg.norm(mode, axis=1).max())
            tries = []
            for sign in (1.0, -1.0):
                b = a.copy()
                b.set_constraint(FixBondLength(i, j))
                b.set_positions(a.positions + sign * mode)
                tries.append(relaxed(b, calculator, fmax, optimizer, max_opt_steps))
            b, ok = min(tries, key=lambda t: t[0].get_potential_energy())
            new = as_image(b, refined, ok)
            unstable.append({"extension": im.extension, "eigenvalue": w, "energy_drop": im.energy - new.energy,
                             "intact": new.intact})
            if progress:
                progress(f"cogef: Δ = {im.extension:.3f} Å is a saddle (lowest eigenvalue {w:.2f} eV/Å²); "
                         f"off it {im.energy - new.energy:.3f} eV lower, {'intact' if new.intact else 'broken'}")
            im, a = new, b
        return im

    images: list[_Image] = []
    images.append(as_image(start, False, True))
    break_at = None
    while images[-1].extension + step <= max_extension + 1e-9:
        im = image_at(images[-1], step, False)
        if im is None:
            break
        images.append(im)
        if not im.intact and break_at is None:
            break_at = im.extension
            if progress:
                progress(f"cogef: broke at Δ = {im.extension:.2f} Å")
        if break_at is not None and im.extension >= break_at + post_break_extension - 1e-9:
            break
    stop_reason = failures[0] if failures else ("past the break" if break_at is not None else "max_extension")

    def probe(base: _Image, ds: float) -> _Image | None:
        return image_at(base, ds, True)

    refinement, converged = [], True
    top = max((im for im in images if im.intact), key=lambda im: im.energy)
    if break_at is not None or top is not images[-1]:
        refinement, converged = refined_energy_max(images, probe, step, tol, max_refinements, e0)
        if progress:
            best = max((im for im in images if im.intact), key=lambda im: im.energy)
            progress(f"cogef: E_max {best.energy - e0:.4f} eV at Δ = {best.extension:.3f} Å after "
                     f"{len(refinement)} refinements ({'converged' if converged else 'NOT converged'})")
    fmax_val, at_f = refined_force_max(images, probe, step, force_tol, max_refinements)

    images.sort(key=lambda im: im.extension)
    ext = np.array([im.extension for im in images])
    energy = np.array([im.energy for im in images]) - e0
    force = np.array([im.force for im in images])
    intact = np.array([im.intact for im in images])
    pos = np.stack([im.positions for im in images])
    brk = first_break(numbers, pos, start_pos, intact)
    k = int(np.argmax(np.where(intact, energy, -np.inf)))
    extras = {"extension": ext, "distance": ext + d0, "cogef_energy": energy, "cogef_force": force,
              "intact": intact.astype(float), "refined": np.array([im.refined for im in images], float),
              "potential_energy": energy + e0}
    labelled = label_as is not None
    frames = Frames(numbers=numbers, positions=pos,
                    energy=energy + e0 if labelled else None,
                    forces=np.stack([im.forces for im in images]) if labelled else None,
                    source=["cogef"] * len(images), labeller=[label_as or ""] * len(images),
                    status=["ok" if labelled else "unlabelled"] * len(images), extras=extras,
                    attrs={"pull": [i, j], "d0": d0, "e0": e0, "step": step, "fmax": fmax,
                           "optimizer": optimizer})
    return CogefProfile((i, j), d0, e0, ext, energy, force, intact, np.array([im.refined for im in images]),
                        frames, float(energy[k]), float(ext[k]), fmax_val, at_f, brk, refinement, converged,
                        sum(not im.converged for im in images), stop_reason, unstable)
