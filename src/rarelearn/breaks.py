"""When a pulled molecule has broken, and which bond broke.

One rule, shared by every barrier read (SMD work curves, COGEF profiles), by the
evaluation's per-replica break report and by the selection's post-break cap:

* the **bonds** are those of the starting structure: atoms ``i, j`` closer than
  ``1.3·(r_i + r_j)`` there (:data:`rarelearn.geometry.DEFAULT_BOND_SCALE`, covalent radii
  of :data:`ase.data.covalent_radii`), any element pair;
* a bond counts as **broken** in a frame once its length exceeds
  ``BREAK_SCALE·(r_i + r_j)`` with ``BREAK_SCALE = 2.0``: C–C past 3.04 Å, C–H past
  2.14 Å, C–O past 2.92 Å, H–H past 1.24 Å;
* the molecule **has broken** at the first frame in which any bond is broken; the bond
  that broke is the one furthest past its break length in that frame.

Why 2.0 and not the 1.3 that draws bonds: the barrier is read *up to* the break, so the
break must lie past the top of the barrier. Under GFN2-xTB the hexane chain's pull
force peaks with the central C–C bond near 1.9–2.0 Å and the work still climbs until
the bond snaps; once it snaps the bond runs past 3 Å within a few tens of fs, while
the work stays flat for the reference. A potential whose fragments still attract at
3–4 Å keeps gaining work after that frame: that work is an error of its own
(reported as the post-break work and force), not part of the barrier.

Units: Å.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np
from ase.data import chemical_symbols

from .geometry import DEFAULT_BOND_SCALE, _radii, covalent_bonds

__all__ = ["BREAK_SCALE", "BreakReport", "find_break", "break_lengths"]

BREAK_SCALE = 2.0


def break_lengths(numbers, pairs: np.ndarray, scale: float = BREAK_SCALE) -> np.ndarray:
    """(M,) Å: the length past which each bond ``pairs[m] = (i, j)`` counts as broken."""
    r = _radii(numbers)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return scale * (r[pairs[:, 0]] + r[pairs[:, 1]])


@dataclass
class BreakReport:
    """Where and how a trajectory broke.

    Attributes
    ----------
    index : first frame with a broken bond, or None (nothing broke)
    bond : (i, j) atom indices of the bond that broke (i < j), or None
    elements : e.g. ``"C-C"``, or None
    length : its length in frame ``index`` (Å), or None
    break_length : the length past which it counts as broken (Å), or None
    """

    index: int | None
    bond: tuple[int, int] | None = None
    elements: str | None = None
    length: float | None = None
    break_length: float | None = None

    @property
    def broke(self) -> bool:
        return self.index is not None

    @property
    def label(self) -> str:
        """``"C-C 8-11"`` (elements, atom indices), or ``"none"``."""
        return f"{self.elements} {self.bond[0]}-{self.bond[1]}" if self.broke else "none"

    def as_dict(self) -> dict:
        """JSON types: ``broke``, ``break_frame``, ``broken_bond`` [i, j], ``broken_elements``."""
        return {"broke": self.broke, "break_frame": self.index,
                "broken_bond": list(self.bond) if self.bond is not None else None,
                "broken_elements": self.elements, "broken_label": self.label}


def find_break(numbers, positions: np.ndarray, start_positions: np.ndarray | None = None,
               scale: float = BREAK_SCALE) -> BreakReport:
    """First frame in which a bond of the starting structure is broken.

    Parameters
    ----------
    numbers : (N,) atomic numbers
    positions : (F, N, 3) Å, the trajectory (SMD frames or COGEF images, in pull order)
    start_positions : (N, 3) Å, the intact structure that defines the bonds; None: the
        first frame of ``positions``
    scale : break criterion, ``BREAK_SCALE`` by default

    Returns
    -------
    :class:`BreakReport` (``index`` None when no bond is ever broken, or no frames).
    """
    z = np.asarray(numbers, dtype=np.int64).reshape(-1)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.shape[0] == 0:
        return BreakReport(None)
    start = pos[0] if start_positions is None else np.asarray(start_positions, dtype=np.float64).reshape(-1, 3)
    pairs = covalent_bonds(z, start, DEFAULT_BOND_SCALE)
    if pairs.shape[0] == 0:
        return BreakReport(None)
    limit = break_lengths(z, pairs, scale)
    lengths = np.linalg.norm(pos[:, pairs[:, 0]] - pos[:, pairs[:, 1]], axis=-1)   # (F, M)
    ratio = lengths / limit
    broken = np.flatnonzero((ratio > 1.0).any(axis=1))
    if broken.size == 0:
        return BreakReport(None)
    f = int(broken[0])
    m = int(np.argmax(ratio[f]))
    i, j = (int(x) for x in pairs[m])
    return BreakReport(f, (i, j), f"{chemical_symbols[z[i]]}-{chemical_symbols[z[j]]}",
                       float(lengths[f, m]), float(limit[m]))

