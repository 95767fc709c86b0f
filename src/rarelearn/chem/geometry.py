"""Connectivity and distances of isolated molecules (no periodic images).

Bonds are drawn between atoms ``i, j`` closer than ``scale * (r_i + r_j)``, with
``r`` the covalent radii of :data:`ase.data.covalent_radii` (Å). With the default
``scale = 1.3`` a C–C bond counts as broken beyond 1.98 Å, C–H beyond 1.39 Å.

Everything is vectorised with numpy; the batched :func:`fragment_counts` labels
all frames of an SMD trajectory (thousands of 20-atom frames) with one
connected-components call.

Units: Å.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from ase.data import atomic_numbers, covalent_radii
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "DEFAULT_BOND_SCALE",
    "pair_distances",
    "covalent_bonds",
    "bond_matrix",
    "fragment_labels",
    "n_fragments",
    "fragment_counts",
    "min_pair_distance",
    "bonds_of_elements",
    "bond_lengths",
]

DEFAULT_BOND_SCALE = 1.3

# Keep temporary (frames, N, N) arrays below about this many elements.
_CHUNK_ELEMENTS = 4_000_000


def _radii(numbers) -> np.ndarray:
    return covalent_radii[np.asarray(numbers, dtype=np.int64).reshape(-1)]


def pair_distances(positions: np.ndarray) -> np.ndarray:
    """All interatomic distances.

    Parameters
    ----------
    positions : (N, 3) or (F, N, 3) Å

    Returns
    -------
    (N, N) or (F, N, N) Å, zero on the diagonal.
    """
    pos = np.asarray(positions, dtype=np.float64)
    diff = pos[..., :, None, :] - pos[..., None, :, :]
    return np.sqrt(np.einsum("...ijk,...ijk->...ij", diff, diff))


def bond_matrix(numbers, positions: np.ndarray, scale: float = DEFAULT_BOND_SCALE) -> np.ndarray:
    """Boolean adjacency of the covalent-bond graph (no self bonds).

    Parameters
    ----------
    numbers : (N,) atomic numbers
    positions : (N, 3) or (F, N, 3) Å
    scale : bond if distance < scale * (r_i + r_j)

    Returns
    -------
    (N, N) or (F, N, N) bool
    """
    r = _radii(numbers)
    cutoff = scale * (r[:, None] + r[None, :])
    adj = pair_distances(positions) < cutoff
    n = r.shape[0]
    adj[..., np.arange(n), np.arange(n)] = False
    return adj


def covalent_bonds(numbers, positions: np.ndarray, scale: float = DEFAULT_BOND_SCALE) -> np.ndarray:
    """Bonded pairs of one structure.

    Parameters
    ----------
    numbers : (N,) atomic numbers
    positions : (N, 3) Å
    scale : bond if distance < scale * (r_i + r_j)

    Returns
    -------
    (M, 2) int64 pairs ``i < j``, sorted.
    """
    adj = bond_matrix(numbers, np.asarray(positions, dtype=np.float64).reshape(-1, 3), scale)
    i, j = np.nonzero(np.triu(adj, k=1))
    return np.stack([i, j], axis=1).astype(np.int64)


def fragment_labels(numbers, positions: np.ndarray, scale: float = DEFAULT_BOND_SCALE) -> tuple[int, np.ndarray]:
    """Connected components of the bond graph of one structure.

    Returns
    -------
    n : int, number of fragments
    labels : (N,) int, fragment index of every atom
    """
    adj = bond_matrix(numbers, np.asarray(positions, dtype=np.float64).reshape(-1, 3), scale)
    n, labels = connected_components(adj, directed=False)
    return int(n), labels


def n_fragments(numbers, positions: np.ndarray, scale: float = DEFAULT_BOND_SCALE) -> int:
    """Number of covalently connected fragments of one structure ((N, 3) Å)."""
    return fragment_labels(numbers, positions, scale)[0]


def fragment_counts(numbers, positions: np.ndarray, scale: float = DEFAULT_BOND_SCALE) -> np.ndarray:
    """Number of fragments of every frame.

    Parameters
    ----------
    numbers : (N,) atomic numbers
    positions : (F, N, 3) Å
    scale : bond if distance < scale * (r_i + r_j)

    Returns
    -------
    (F,) int64
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    n_frames, n_atoms = pos.shape[0], pos.shape[1]
    if n_frames == 0:
        return np.zeros(0, dtype=np.int64)
    rows, cols = [], []
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n_atoms * n_atoms))
    for start in range(0, n_frames, chunk):
        adj = np.triu(bond_matrix(numbers, pos[start:start + chunk], scale), k=1)
        f, i, j = np.nonzero(adj)
        off = (f + start) * n_atoms
        rows.append(off + i)
        cols.append(off + j)
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    total = n_frames * n_atoms
    graph = coo_matrix((np.ones(rows.shape[0], dtype=np.int8), (rows, cols)), shape=(total, total)).tocsr()
    n_comp, labels = connected_components(graph, directed=False)
    # components never span frames: count distinct labels per frame
    comp_frame = np.empty(n_comp, dtype=np.int64)
    comp_frame[labels] = np.repeat(np.arange(n_frames), n_atoms)
    return np.bincount(comp_frame, minlength=n_frames).astype(np.int64)


def min_pair_distance(positions: np.ndarray) -> float | np.ndarray:
    """Shortest interatomic distance.

    Parameters
    ----------
    positions : (N, 3) Å -> float, or (F, N, 3) -> (F,) array. ``inf`` for one atom.
    """
    pos = np.asarray(positions, dtype=np.float64)
    n = pos.shape[-2]
    if n < 2:
        return float("inf") if pos.ndim == 2 else np.full(pos.shape[0], np.inf)
    d = pair_distances(pos)
    iu = np.triu_indices(n, k=1)
    m = d[..., iu[0], iu[1]].min(axis=-1)
    return float(m) if pos.ndim == 2 else m


def _as_number(e) -> int:
    if isinstance(e, str):
        return atomic_numbers[e]
    return int(e)


def bonds_of_elements(numbers, positions: np.ndarray, element_pair: Sequence = ("C", "C"),
                      scale: float = DEFAULT_BOND_SCALE) -> np.ndarray:
    """Covalent bonds of one structure between the two given elements.

    Parameters
    ----------
    numbers : (N,) atomic numbers
    positions : (N, 3) Å
    element_pair : two element symbols or atomic numbers, order irrelevant
    scale : bond criterion, see :func:`covalent_bonds`

    Returns
    -------
    (M, 2) int64 pairs ``i < j`` in the order of :func:`covalent_bonds`.
    """
    z = np.asarray(numbers, dtype=np.int64).reshape(-1)
    a, b = sorted(_as_number(e) for e in element_pair)
    pairs = covalent_bonds(z, positions, scale)
    if pairs.shape[0] == 0:
        return pairs
    za = np.minimum(z[pairs[:, 0]], z[pairs[:, 1]])
    zb = np.maximum(z[pairs[:, 0]], z[pairs[:, 1]])
    return pairs[(za == a) & (zb == b)]


def bond_lengths(numbers, positions: np.ndarray, element_pair: Sequence = ("C", "C"),
                 reference_bonds: np.ndarray | None = None,
                 scale: float = DEFAULT_BOND_SCALE) -> np.ndarray:
    """Lengths of a fixed set of bonds along a trajectory.

    Parameters
    ----------
    numbers : (N,) atomic numbers
    positions : (F, N, 3) or (N, 3) Å
    element_pair : elements of the bonds to follow when ``reference_bonds`` is None
    reference_bonds : (M, 2) atom index pairs to follow. None: the ``element_pair`` bonds
        present in the first frame (``bonds_of_elements(numbers, positions[0], element_pair)``),
        so a bond keeps its column after it breaks.
    scale : bond criterion for the reference structure

    Returns
    -------
    (F, M) Å (``(M,)`` for a single (N, 3) structure); column m is the distance of pair m.
    """
    pos = np.asarray(positions, dtype=np.float64)
    single = pos.ndim == 2
    if single:
        pos = pos[None]
    if reference_bonds is None:
        pairs = bonds_of_elements(numbers, pos[0], element_pair, scale) if len(pos) else np.zeros((0, 2), int)
    else:
        pairs = np.asarray(reference_bonds, dtype=np.int64).reshape(-1, 2)
    d = np.linalg.norm(pos[:, pairs[:, 0]] - pos[:, pairs[:, 1]], axis=-1)
    return d[0] if single else d
