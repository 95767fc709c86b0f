"""When a pulled molecule has broken, which bond broke, and the bond report.

One rule, shared by every barrier read (SMD work curves, COGEF profiles), by the
evaluation's per-replica break report and by the selection's post-break cap:

* the **bonds** are those of the starting structure: atoms ``i, j`` closer than
  ``1.3·(r_i + r_j)`` there (:data:`rarelearn.chem.geometry.DEFAULT_BOND_SCALE`, covalent radii
  of :data:`ase.data.covalent_radii`), any element pair;
* a bond counts as **broken** in a frame once its length exceeds
  ``BREAK_SCALE·(r_i + r_j)`` with ``BREAK_SCALE = 2.0``: C–C past 3.04 Å, C–N 2.94 Å,
  C–O 2.84 Å, N–N 2.84 Å, O–O 2.64 Å, C–H 2.14 Å, N–H 2.04 Å, O–H 1.94 Å, H–H 1.24 Å;
* the molecule **has broken** at the first frame in which any bond is broken; the bond
  that broke is the one furthest past its break length in that frame.

Why 2.0 and not the 1.3 that draws bonds: the barrier is read *up to* the break, so the
break must lie past the top of the barrier. Under GFN2-xTB the hexane chain's pull
force peaks with the central C–C bond near 1.9–2.0 Å and the work still climbs until
the bond snaps; once it snaps the bond runs past 3 Å within a few tens of fs, while
the work stays flat for the reference. A potential whose fragments still attract at
3–4 Å keeps gaining work after that frame: that work is an error of its own
(reported as the post-break work and force), not part of the barrier.

The bond report (:func:`bond_report`) follows the skeleton bonds (between atoms other than
hydrogen: C–C, C–O, C–N, ...) of a reference structure along any trajectory (ANI or SchNet
SMD) and flags the failures of the paper's Fig. 4b: more than two fragments, and a bond
broken other than the one stretched; :func:`cc_bond_report` is the same for C–C bonds only.

Units: Å.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase.data import chemical_symbols

from .geometry import DEFAULT_BOND_SCALE, _radii, bond_lengths, bonds_of_elements, covalent_bonds, fragment_counts

__all__ = ["BREAK_SCALE", "BreakReport", "find_break", "snap_start", "break_lengths", "bond_position", "bond_report",
           "cc_bond_report"]

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


def snap_start(numbers, positions: np.ndarray, brk: BreakReport, scale: float = DEFAULT_BOND_SCALE) -> int | None:
    """Where the snap begins: the last frame before the break ``brk`` in which the bond that
    broke was still a bond (no longer than ``scale`` (1.3) × its covalent radii, 1.98 Å for C–C);
    0 when it never was; None when nothing broke. From there the bond runs to its break length
    (3.04 Å for C–C) without coming back.

    Why a bond length and not the largest pull force: a stretched chain's pull force sits on a
    plateau before it lets go, and where on the plateau it peaks is noise. On the hexane
    reference's 48 pulls (GFN2-xTB) the work at the force maximum scatters by 0.36 eV (σ), at
    the snap's start by 0.15 eV (as E_a itself, 0.14), and the work during the snap by 0.08 eV.
    """
    if not brk.broke:
        return None
    z = np.asarray(numbers, dtype=np.int64).reshape(-1)
    i, j = brk.bond
    pos = np.asarray(positions, dtype=np.float64)[: brk.index + 1]
    bonded = np.flatnonzero(np.linalg.norm(pos[:, j] - pos[:, i], axis=-1)
                            <= break_lengths(z, [(i, j)], scale)[0])
    return int(bonded[-1]) if bonded.size else 0


def _bond_graph(numbers, positions: np.ndarray, scale: float):
    """The covalent bonds of a structure (:func:`rarelearn.chem.geometry.covalent_bonds`, H
    included) as a sparse (N, N) adjacency matrix, for graph distances along the bonds."""
    from scipy.sparse import coo_matrix

    n = len(numbers)
    pairs = covalent_bonds(numbers, positions, scale)
    if not len(pairs):
        return coo_matrix((n, n)).tocsr()
    return coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()


def bond_position(numbers, positions: np.ndarray, pulled: Sequence[int], bond: Sequence[int]) -> tuple:
    """Where a bond sits relative to the pulled atoms, for telling bonds that are the same up
    to the molecule's symmetry (hexane pulled end to end: C0–C1 and C4–C5).

    Parameters
    ----------
    numbers : (N,) atomic numbers; positions : (N, 3) Å, the intact structure (its covalent
        bonds are the graph); pulled : the two pulled atoms; bond : the pair (i, j)

    Returns
    -------
    (elements, distances): the sorted element pair, and for each pulled atom the sorted pair
    of graph distances (bonds) to i and j, the two sorted; equal positions mean the same
    elements at the same places along the load path.
    """
    from scipy.sparse.csgraph import shortest_path

    z = np.asarray(numbers, dtype=np.int64).reshape(-1)
    graph = _bond_graph(z, np.asarray(positions, dtype=np.float64).reshape(-1, 3), DEFAULT_BOND_SCALE)
    dist = shortest_path(graph, directed=False, unweighted=True, indices=[int(pulled[0]), int(pulled[1])])
    i, j = (int(x) for x in bond)
    elements = tuple(sorted((chemical_symbols[z[i]], chemical_symbols[z[j]])))
    return elements, tuple(sorted(tuple(sorted((float(d[i]), float(d[j])))) for d in dist))


# ---------------------------------------------------------------------- bond report
def _first(mask: np.ndarray) -> int | None:
    w = np.flatnonzero(mask)
    return int(w[0]) if w.size else None


def _load_path_bonds(numbers, reference_positions: np.ndarray, pulled: tuple[int, int],
                     pairs: np.ndarray, scale: float) -> np.ndarray:
    """(M,) bool: bond m of ``pairs`` lies on the shortest bond path between the pulled atoms
    in the reference structure (all bonds, H included, count as edges)."""
    from scipy.sparse.csgraph import shortest_path

    g = _bond_graph(numbers, reference_positions, scale)
    i, j = pulled
    _, pred = shortest_path(g, directed=False, unweighted=True, indices=[i], return_predecessors=True)
    on_path = set()
    node = j
    while node != i and node >= 0:
        prev = int(pred[0, node])
        if prev < 0:
            return np.zeros(len(pairs), dtype=bool)  # pulled atoms not connected
        on_path.add((min(prev, node), max(prev, node)))
        node = prev
    return np.array([(int(a), int(b)) in on_path for a, b in pairs], dtype=bool)


def _followed_bonds(z: np.ndarray, ref: np.ndarray, elements, scale: float) -> np.ndarray:
    """(M, 2) the bonds a bond report follows (see :func:`bond_report`)."""
    if elements is not None:
        return bonds_of_elements(z, ref, tuple(elements), scale)
    pairs = covalent_bonds(z, ref, scale)
    heavy = pairs[(z[pairs[:, 0]] != 1) & (z[pairs[:, 1]] != 1)] if len(pairs) else pairs
    return heavy if len(heavy) else pairs


def bond_report(numbers, positions, reference_positions, pulled: Sequence[int] | None = None,
                expected_bond: Sequence[int] | None = None, scale: float = DEFAULT_BOND_SCALE,
                elements: Sequence[str] | None = None) -> dict:
    """The molecule's skeleton bonds along a trajectory and flags for unphysical bond breaking
    (any model family, any elements).

    The bonds followed are those of ``reference_positions`` between two atoms that are not
    hydrogen (the skeleton: C–C, C–O, C–N, O–O, ...; a molecule without any, such as water,
    has all its bonds followed), or with ``elements`` (e.g. ``("C", "C")``,
    :func:`cc_bond_report`) those between that pair only. A bond (i, j) counts as broken above
    its own ``break_length = scale · (r_i + r_j)`` (covalent radii; 1.3 × by default: C–C
    1.98 Å, C–N 1.91 Å, C–O 1.85 Å, N–N 1.85 Å, O–O 1.72 Å).

    The **stretched bond** is ``expected_bond`` when given; else, of the followed bonds broken
    in the last frame, the one whose final broken stretch began first (the bond the pull
    broke; a tie goes to the one furthest past its break length in the last frame); with
    none broken in the last frame, the one nearest its break length there (the most strained).

    Flags per frame:

    * ``multi_fragment`` — more than 2 fragments (:func:`rarelearn.chem.geometry.fragment_counts`,
      all atoms): the molecule came apart in more than the two pieces one dissociation makes.
    * ``wrong_bond_broken`` — a followed bond other than the stretched one is above its break
      length; or the stretched bond is above it although it is not on the load path, the
      shortest bond path between the two ``pulled`` atoms in the reference structure.

    Decision: when no ``expected_bond`` is given, whichever single load-path bond breaks is
    accepted. Pulling butane by C0 and C3 may break C1–C2 or a terminal C–C bond; the
    reference method (GFN2-xTB or DFTB) itself breaks different bonds in different runs, so
    this function does not call one of them wrong. To require a particular bond (for example
    the one the reference SMD broke), pass ``expected_bond``. A second bond that goes beyond
    its break length, even briefly and even if it reforms (two long C–C bonds, Fig. 4b iii of
    the paper), is flagged.

    Parameters
    ----------
    numbers : (N,) atomic numbers
    positions : (F, N, 3) or (N, 3) Å
    reference_positions : (N, 3) Å, intact molecule that defines the bonds
    pulled : (i, j) atom indices of the pulled atoms (e.g. the terminal carbons); None: no
        load-path check
    expected_bond : (a, b) the followed bond that should break, or None
    scale : bond criterion (see :mod:`rarelearn.chem.geometry`)
    elements : follow only the bonds of this element pair; None: the skeleton's

    Returns
    -------
    dict with
        bonds (M, 2) int: the followed bonds (i < j); labels (M,) e.g. ``"C-O 1-2"``;
        bond_lengths (F, M) Å; break_lengths (M,) Å; break_length float Å (the stretched
        bond's; None without bonds); broken (F, M) bool; n_fragments (F,) int;
        pulled_distance (F,) Å or None; on_load_path (M,) bool (all True without ``pulled``);
        stretched_bond (a, b) or None (no bond followed); stretched_index int or None;
        multi_fragment (F,) bool; wrong_bond_broken (F,) bool;
        first_break, first_multi_fragment, first_wrong_bond_broken: int frame index or None
        (first_break: first frame with the stretched bond above its break length);
        summary: the scalars above, ``stretched_label``, n_frames and max_fragments, as JSON types.
    """
    z = np.asarray(numbers, dtype=np.int64).reshape(-1)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    ref = np.asarray(reference_positions, dtype=np.float64).reshape(-1, 3)
    if pos.ndim != 3 or pos.shape[1:] != (len(z), 3) or ref.shape != (len(z), 3):
        raise ValueError(f"positions must be (F, {len(z)}, 3) and reference_positions ({len(z)}, 3); "
                         f"got {pos.shape} and {ref.shape}")
    n_frames = pos.shape[0]
    pairs = _followed_bonds(z, ref, elements, scale)
    lengths = bond_lengths(z, pos, reference_bonds=pairs) if len(pairs) else np.zeros((n_frames, 0))
    limits = scale * (_radii(z)[pairs[:, 0]] + _radii(z)[pairs[:, 1]]) if len(pairs) else np.zeros(0)
    ratio = lengths / limits if len(pairs) else lengths
    broken = ratio > 1.0
    frags = fragment_counts(z, pos, scale) if n_frames else np.zeros(0, dtype=np.int64)
    labels = [f"{chemical_symbols[z[i]]}-{chemical_symbols[z[j]]} {i}-{j}" for i, j in pairs.tolist()]

    if pulled is not None:
        pi, pj = (int(v) for v in pulled)
        if not (0 <= pi < len(z) and 0 <= pj < len(z)) or pi == pj:
            raise ValueError(f"pulled must be two different atom indices below {len(z)}, got {pulled}")
        on_path = _load_path_bonds(z, ref, (pi, pj), pairs, scale)
        pulled_distance = np.linalg.norm(pos[:, pi] - pos[:, pj], axis=-1)
    else:
        on_path = np.ones(len(pairs), dtype=bool)
        pulled_distance = None

    s_idx = None
    if expected_bond is not None:
        a, b = sorted(int(v) for v in expected_bond)
        hit = np.flatnonzero((pairs[:, 0] == a) & (pairs[:, 1] == b)) if len(pairs) else np.zeros(0, int)
        if not hit.size:
            what = f"{'-'.join(elements)} " if elements is not None else "followed (skeleton) "
            raise ValueError(f"expected_bond {tuple(expected_bond)} is not a {what}bond of the reference structure "
                             f"(followed: {', '.join(labels) or 'none'})")
        s_idx = int(hit[0])
    elif len(pairs) and n_frames:
        end_broken = np.flatnonzero(broken[-1])
        if end_broken.size:  # the bond of the final break: the earliest start of a run broken to the end
            starts = []
            for m in end_broken:
                intact = np.flatnonzero(~broken[:, m])
                starts.append(int(intact[-1]) + 1 if intact.size else 0)
            starts = np.array(starts)
            cand = end_broken[starts == starts.min()]
            s_idx = int(cand[np.argmax(ratio[-1, cand])])
        else:
            s_idx = int(np.argmax(ratio[-1]))

    wrong = np.zeros(n_frames, dtype=bool)
    if s_idx is not None:
        others = broken.copy()
        others[:, s_idx] = False
        wrong = others.any(axis=1)
        if not on_path[s_idx]:
            wrong |= broken[:, s_idx]
    multi = frags > 2
    first_break = _first(broken[:, s_idx]) if s_idx is not None else None
    stretched = (int(pairs[s_idx, 0]), int(pairs[s_idx, 1])) if s_idx is not None else None
    break_len = float(limits[s_idx]) if s_idx is not None else None
    out = {
        "bonds": pairs, "labels": labels, "bond_lengths": lengths, "break_lengths": limits,
        "break_length": break_len, "broken": broken,
        "n_fragments": frags, "pulled_distance": pulled_distance, "on_load_path": on_path,
        "stretched_bond": stretched, "stretched_index": s_idx,
        "multi_fragment": multi, "wrong_bond_broken": wrong,
        "first_break": first_break, "first_multi_fragment": _first(multi),
        "first_wrong_bond_broken": _first(wrong),
    }
    out["summary"] = {
        "n_frames": int(n_frames), "break_length": break_len,
        "stretched_bond": list(stretched) if stretched else None,
        "stretched_label": labels[s_idx] if s_idx is not None else None,
        "stretched_on_load_path": bool(on_path[s_idx]) if s_idx is not None else None,
        "first_break": first_break, "first_multi_fragment": out["first_multi_fragment"],
        "first_wrong_bond_broken": out["first_wrong_bond_broken"],
        "max_fragments": int(frags.max()) if n_frames else 0,
    }
    return out


def cc_bond_report(numbers, positions, reference_positions, pulled: Sequence[int] | None = None,
                   expected_bond: Sequence[int] | None = None, scale: float = DEFAULT_BOND_SCALE) -> dict:
    """:func:`bond_report` of the C–C bonds only (break length 1.3 × 2 r_C = 1.98 Å by default)."""
    return bond_report(numbers, positions, reference_positions, pulled, expected_bond, scale, elements=("C", "C"))
