"""The refinements of a COGEF scan (:mod:`rarelearn.md.cogef`): E_max and F_max around the
scan's images by halving the step, and where the profile breaks. ``probe(base, ds)`` relaxes
``base`` pulled ``ds`` further (None where the calculation failed or compresses past the start);
images are the scan's ``_Image`` records (``extension``, ``energy``, ``force``, ``intact``)."""
from __future__ import annotations

import math

import numpy as np

from ..chem.breaks import BreakReport, break_lengths, find_break


def first_break(numbers, pos: np.ndarray, start_pos: np.ndarray, intact: np.ndarray) -> BreakReport:
    """The profile's break: the first image (in order of extension) that is not intact, past
    a bond's break length (:func:`rarelearn.chem.breaks.find_break`) or past an energy drop;
    for a drop, the bond stretched most relative to its break length there."""
    brk = find_break(numbers, pos, start_pos)
    broken = np.flatnonzero(~np.asarray(intact, dtype=bool))
    if broken.size == 0 or (brk.broke and brk.index <= broken[0]):
        return brk
    k = int(broken[0])
    # every bond counts as broken at a vanishing scale: the one returned is the most stretched
    most = find_break(numbers, pos[k][None], start_pos, scale=1e-6)
    limit = break_lengths(numbers, np.array([most.bond]))[0]
    return BreakReport(k, most.bond, most.elements, most.length, float(limit))


def refined_energy_max(images: list, probe, step: float, tol: float, max_rounds: int,
                       e0: float) -> tuple[list, bool]:
    """E_max refined around the highest intact image: the step is halved and new images are
    relaxed from it at +h (and −h where it is not the last intact image; past the end of the
    intact branch a probe relaxes onto the broken branch and is not counted), until one halving
    gains less than ``tol`` (eV) *and* F·h < ``tol``. Appends the new images to ``images``;
    returns one record per halving (``step``, ``e_max`` relative to ``e0``, ``extension_at_max``,
    ``gain``, ``bound``) and whether the criterion was met within ``max_rounds``."""
    best = max((im for im in images if im.intact), key=lambda im: im.energy)
    refinement, h = [], step
    for _ in range(max_rounds):
        h /= 2.0
        last = max((im for im in images if im.intact), key=lambda im: im.extension) is best
        images.extend(im for ds in ([h] if last else [h, -h]) if (im := probe(best, ds)))
        new = max((im for im in images if im.intact), key=lambda im: im.energy)
        gain, best = new.energy - best.energy, new
        bound = abs(best.force) * h
        refinement.append({"step": h, "e_max": best.energy - e0, "extension_at_max": best.extension,
                           "gain": gain, "bound": bound})
        if gain < tol and bound < tol:
            return refinement, True
    return refinement, False


def _vertex(xm: float, x0: float, xp: float, fm: float, f0: float, fp: float) -> tuple[float, float]:
    """Vertex (value, position) of the parabola through three equally spaced points."""
    h = xp - x0
    curv = fm - 2 * f0 + fp
    if curv >= 0:
        return f0, x0
    return f0 - (fp - fm) ** 2 / (8 * curv), x0 + h * (fm - fp) / (2 * curv)


def refined_force_max(images: list, probe, step: float, tol: float, max_rounds: int) -> tuple[float, float]:
    """Largest constraint force of the intact images, refined: the step around the largest
    is halved and new images are relaxed at ±h of it (a probe past the break is not
    counted); once both probes are intact, the vertex of the parabola through the three is
    the estimate, until it moves by less than ``tol`` (eV/Å). Appends the new images to
    ``images``."""
    intact = [im for im in images if im.intact]
    if len(intact) < 2:
        return (intact[0].force, intact[0].extension) if intact else (math.nan, math.nan)
    best = max(intact, key=lambda im: im.force)
    if best is max(intact, key=lambda im: im.extension) or best.extension == 0.0:
        return float(best.force), float(best.extension)      # at an end: no maximum inside
    h, previous = step, None
    value, where = best.force, best.extension
    for _ in range(max_rounds):
        h /= 2.0
        lo, hi = probe(best, -h), probe(best, h)
        images.extend(im for im in (lo, hi) if im is not None)
        usable = [im for im in (lo, hi) if im is not None and im.intact]
        if len(usable) == 2:
            value, where = _vertex(lo.extension, best.extension, hi.extension, lo.force, best.force, hi.force)
            if previous is not None and abs(value - previous) < tol:
                break
            previous = value
        best = max([best, *usable], key=lambda im: im.force)
        if best.force > value:
            value, where = best.force, best.extension
    return float(value), float(where)
