"""Choosing the frames to label: UQ candidates, similarity screening, caps, augmentation.

Steps (2.3.3-2.3.4 of the paper, numbers from docs/method.md):

1. candidates: frames whose ensemble σ exceeds the threshold, in time order;
2. screening, walking the candidates in time order: a frame is kept only if it
   differs from **every** frame kept so far by more than ``min_distance_gap``
   (0.01 Å) in spring distance **and** by more than ``min_energy_gap``
   (1 kcal/mol = 0.0433641 eV) in predicted energy. ``post_break_screening="separate"``
   (the default) walks the frames before and after the break as two lists, each frame
   compared with the kept frames of its own side; ``"joint"`` walks one list, the
   paper's text read literally. Joint screening keeps almost no post-break frame when
   the fragments lie lower than the top of the pull (GFN2-xTB at 300 K; the hexane
   campaign's pulls, iterations 4–6, 12 replicas: 98 % of the 15,579 post-break frames
   above the threshold, 1 kept; ``benchmarks/post_break.py``): the intact chain's kept
   frames already cover every energy of the fragments, 1 kcal/mol apart, so the
   fragments' frames all fall within the gap of some pre-break frame -- a different
   configuration at the same energy. Separate screening keeps 12–16 per replica there;
3. at most ``max_post_break`` (50) kept frames at or after the bond break -- the first
   ones in time order (``post_break="first"``, what the time-ordered walk of the paper
   gives), or spread evenly over the post-break kept frames (``post_break="even"``);
4. optional overall cap ``max_frames``: kept frames spread evenly over the kept list
   (``np.linspace`` over their positions), so the cap thins the selection rather than
   cutting off the end of the pull;
5. augmentation: ``n_copies`` copies of each kept frame with uniform noise in
   [−amplitude, +amplitude] Å on every coordinate, unlabelled.

The whole policy of one iteration, from the config's ``selection`` section, is here:
:func:`select_replica` (steps 1–3 for one SMD replica, plus the frame before a blow-up,
:func:`blowup_frames`; a replica that blew up before the pull offers every frame of its
relaxation as a candidate), :func:`cap_frames` (step 4, over all replicas together) and
:func:`frames_to_label` (step 5, with the iteration's augmentation seed).
"""
from __future__ import annotations

import numpy as np

from ..chem.barrier import pull_began
from ..chem.breaks import find_break
from ..dataset import STATUS_UNLABELLED, Frames
from ..units import EV_PER_KCAL_MOL

__all__ = ["DEFAULT_ENERGY_GAP", "screen", "select_frames", "augment", "blowup_frames", "select_replica",
           "cap_frames", "frames_to_label", "select_path", "select_branch"]

#: 1 kcal/mol in eV, the default energy gap of the screening.
DEFAULT_ENERGY_GAP: float = EV_PER_KCAL_MOL


def screen(candidates_in_time_order, spring_distance, energy, min_distance_gap: float = 0.01,
           min_energy_gap: float = DEFAULT_ENERGY_GAP) -> np.ndarray:
    """Similarity screening of candidate frames.

    Parameters
    ----------
    candidates_in_time_order : (C,) int frame indices, in the order to walk them
    spring_distance : (F,) Å, per frame of the whole run (indexed by the candidates)
    energy : (F,) eV, predicted energy per frame of the whole run (indexed by the candidates)
    min_distance_gap : Å; a kept frame must differ by more than this from every kept frame
    min_energy_gap : eV; ... and by more than this in energy

    Returns
    -------
    (M,) int64 kept frame indices, a subsequence of the candidates.
    """
    cand = np.asarray(candidates_in_time_order, dtype=np.int64).reshape(-1)
    d = np.asarray(spring_distance, dtype=np.float64).reshape(-1)
    e = np.asarray(energy, dtype=np.float64).reshape(-1)
    if min_distance_gap < 0 or min_energy_gap < 0:
        raise ValueError("screening gaps must be >= 0")
    if cand.size and (cand.min() < 0 or cand.max() >= min(len(d), len(e))):
        raise IndexError("candidate index out of range of spring_distance/energy")
    kept: list[int] = []
    kd = np.empty(len(cand))
    ke = np.empty(len(cand))
    for c in cand:
        m = len(kept)
        if m == 0 or np.all((np.abs(kd[:m] - d[c]) > min_distance_gap)
                            & (np.abs(ke[:m] - e[c]) > min_energy_gap)):
            kd[m], ke[m] = d[c], e[c]
            kept.append(int(c))
    return np.asarray(kept, dtype=np.int64)


def _even(n: int, k: int) -> np.ndarray:
    """k positions spread evenly over range(n) (all of them if k >= n)."""
    if k >= n:
        return np.arange(n)
    if k <= 0:
        return np.arange(0)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def select_frames(sigma, thr: float, spring_distance, predicted_energy, break_index: int | None,
                  max_post_break: int | None = 50, max_frames: int | None = None,
                  min_distance_gap: float = 0.01, min_energy_gap: float = DEFAULT_ENERGY_GAP,
                  post_break: str = "first", post_break_screening: str = "separate") -> np.ndarray:
    """Frames of one SMD run to label.

    Parameters
    ----------
    sigma : (F,) ensemble σ per frame, eV
    thr : UQ threshold, eV; candidates have σ > thr
    spring_distance : (F,) Å
    predicted_energy : (F,) eV (e.g. the ensemble-mean energy)
    break_index : first frame at/after the bond break, or None (no break)
    max_post_break : most kept frames at or after ``break_index`` (None: no cap)
    max_frames : overall cap, applied last, spread evenly over the kept frames (None: no cap)
    min_distance_gap, min_energy_gap : screening gaps, Å and eV
    post_break : "first" (the first ``max_post_break`` in time order) or "even"
    post_break_screening : "separate" (frames at or after ``break_index`` screened against
        the post-break frames kept only) or "joint" (one walk over all candidates)

    Returns
    -------
    (M,) int64 frame indices in time order; may be empty.
    """
    s = np.asarray(sigma, dtype=np.float64).reshape(-1)
    if post_break not in ("first", "even"):
        raise ValueError(f"post_break must be 'first' or 'even', got {post_break!r}")
    if post_break_screening not in ("separate", "joint"):
        raise ValueError(f"post_break_screening must be 'separate' or 'joint', got {post_break_screening!r}")
    cand = np.flatnonzero(s > thr)
    if break_index is not None and post_break_screening == "separate":
        kept = np.concatenate([screen(side, spring_distance, predicted_energy, min_distance_gap, min_energy_gap)
                               for side in (cand[cand < break_index], cand[cand >= break_index])])
    else:
        kept = screen(cand, spring_distance, predicted_energy, min_distance_gap, min_energy_gap)
    if break_index is not None and max_post_break is not None:
        pre = kept[kept < break_index]
        post = kept[kept >= break_index]
        if len(post) > max_post_break:
            post = post[:max_post_break] if post_break == "first" else post[_even(len(post), max_post_break)]
        kept = np.concatenate([pre, post])
    if max_frames is not None and len(kept) > max_frames:
        kept = kept[_even(len(kept), int(max_frames))]
    return np.sort(kept).astype(np.int64)


def augment(frames: Frames, n_copies: int = 2, amplitude: float = 0.05, seed: int = 0) -> Frames:
    """Noisy copies of every frame (2.3.4).

    Each frame gets ``n_copies`` copies, in order (frame 0 copy 0, frame 0 copy 1, frame 1
    copy 0, ...), each coordinate displaced by independent uniform noise in
    [−amplitude, +amplitude] Å. The copies are unlabelled (energy and forces NaN, status
    "unlabelled", labeller ""), source "augment", the iteration of their parent; extras
    are the parent's values (they describe the parent, not the displaced copy) plus
    ``augment_parent`` (index of the parent in ``frames``). The originals are not included.
    """
    if n_copies < 0:
        raise ValueError(f"n_copies must be >= 0, got {n_copies}")
    if amplitude < 0:
        raise ValueError(f"amplitude must be >= 0, got {amplitude}")
    parent = np.repeat(np.arange(len(frames)), n_copies)
    rng = np.random.default_rng(seed)
    pos = frames.positions[parent] + rng.uniform(-amplitude, amplitude, size=(len(parent), frames.n_atoms, 3))
    extras = {k: v[parent] for k, v in frames.extras.items()}
    extras["augment_parent"] = parent.astype(np.float64)
    return Frames(numbers=frames.numbers.copy(), positions=pos, energy=np.full(len(parent), np.nan),
                  forces=np.full((len(parent), frames.n_atoms, 3), np.nan), source="augment",
                  iteration=frames.iteration[parent], labeller="", status=STATUS_UNLABELLED,
                  extras=extras, attrs=dict(frames.attrs))


def blowup_frames(frames: Frames, lookback: int | None) -> list[int]:
    """For an SMD that the blow-up check stopped: the frame ``lookback`` recorded frames before
    the stop (the configuration the potential was driving towards its failure), to be labelled
    whatever its UQ. Empty for a completed run or ``lookback`` None."""
    reason = str(frames.attrs.get("stop_reason", "completed"))
    if lookback is None or len(frames) == 0 or reason == "completed":
        return []
    return [max(len(frames) - 1 - int(lookback), 0)]


def frames_to_label(kept: Frames, source: str | None, iteration: int, selection_cfg: dict) -> Frames:
    """The kept frames marked unlabelled (``source``, or the sources they carry when None;
    ``iteration``), followed by ``selection.augment_copies`` noisy copies of each (seed
    ``selection.seed + 7919·iteration``); no extras or attrs (what they described was the
    sampling run)."""
    kept.extras, kept.attrs = {}, {}
    if source is not None:
        kept.source[:] = source
    kept.iteration[:] = iteration
    kept.status[:] = "unlabelled"
    kept.energy = np.full(len(kept), np.nan)
    kept.forces = np.full((len(kept), kept.n_atoms, 3), np.nan)
    kept.labeller[:] = ""
    if not selection_cfg["augment_copies"]:
        return kept
    noisy = augment(kept, n_copies=selection_cfg["augment_copies"], amplitude=selection_cfg["augment_amplitude"],
                    seed=selection_cfg["seed"] + 7919 * iteration)
    noisy.extras = {}
    return Frames.concatenate([kept, noisy])


def select_replica(frames: Frames, sigma: np.ndarray, threshold: float, energies: np.ndarray,
                   selection_cfg: dict) -> tuple[np.ndarray, dict]:
    """The frames of one SMD replica to label (steps 1–3, the screening gaps and the
    post-break cap of ``selection_cfg``), plus the frame ``blowup_lookback`` before a
    blow-up (:func:`blowup_frames`).

    A replica that blew up before the pull began holds its relaxation's frames up to the
    blow-up (:func:`rarelearn.chem.barrier.pull_began` False): every one of them is a
    candidate, whatever its σ, and the screening and caps pick among them. The potential
    could not hold the molecule together at the pull's temperature, which says more than
    any threshold: a μ+nσ threshold read off a run that is wrong from its start can leave
    all of it below (measured: ethanol, a committee trained for 5 epochs, 134 frames to
    the blow-up, σ ≤ 0.19 eV under a threshold of 0.27 eV), and then the next iteration
    would learn nothing new and blow up again.

    Parameters
    ----------
    frames : the replica (extras ``spring_distance``, Å), non-empty
    sigma : (F,) committee σ per frame, eV; threshold : its UQ threshold, eV
    energies : (K, F) member energies, eV (their mean is the screened energy)

    Returns
    -------
    (indices (M,) int, record): record has ``pull_began``, ``candidates``, ``kept``,
    ``threshold``, ``break_index``, ``stop_reason``, ``blowup_frames`` and ``indices``
    (JSON types).
    """
    began = pull_began(frames)
    sigma = np.asarray(sigma, dtype=np.float64)
    cut = threshold if began else -np.inf
    bi = find_break(frames.numbers, frames.positions).index
    idx = select_frames(sigma, cut, frames.extras["spring_distance"], energies.mean(axis=0), bi,
                        max_post_break=selection_cfg["max_post_break"], max_frames=None,
                        post_break_screening=selection_cfg.get("post_break_screening", "separate"),
                        min_distance_gap=selection_cfg["min_distance_gap"],
                        min_energy_gap=selection_cfg["min_energy_gap_kcal"] * EV_PER_KCAL_MOL)
    forced = blowup_frames(frames, selection_cfg.get("blowup_lookback", 10))
    idx = np.union1d(np.asarray(idx, dtype=int), forced).astype(int)
    return idx, {"pull_began": began, "candidates": int((sigma > cut).sum()), "kept": len(idx),
                 "threshold": threshold, "break_index": bi, "stop_reason": frames.attrs.get("stop_reason"),
                 "blowup_frames": forced, "indices": [int(i) for i in idx]}


def select_path(path: Frames, threshold: float, selection_cfg: dict, max_frames: int | None) -> tuple:
    """The images of a COGEF path to label (samplers ``cogef`` and ``smd+cogef``): the relaxed
    images (in order of extension, extras ``extension``, ``potential_energy``, ``uq_sigma``)
    whose committee spread exceeds ``threshold``, screened like SMD frames (the extension
    standing in for the spring distance, the best member's energy for the predicted energy),
    at most ``selection.max_post_break`` at or past the break, at most ``max_frames`` spread
    evenly over the path.

    Returns
    -------
    (indices (M,) int, record): record has ``images``, ``threshold``, ``candidates``, ``kept``,
    ``break_index``, ``indices`` and ``extensions`` (JSON types).
    """
    rec = {"images": len(path), "threshold": float(threshold), "candidates": 0, "kept": 0}
    if len(path) == 0 or not np.isfinite(threshold):
        return np.zeros(0, dtype=int), rec
    sigma = np.asarray(path.extras["uq_sigma"], dtype=float)
    ext = path.extras["extension"]
    intact = path.extras.get("intact")
    if intact is not None:   # the scan's own rule, which also counts an energy drop as the break
        gone = np.flatnonzero(np.asarray(intact) < 0.5)
        bi = int(gone[0]) if gone.size else None
    else:
        bi = find_break(path.numbers, path.positions).index
    idx = select_frames(sigma, threshold, ext, path.extras["potential_energy"], bi,
                        max_post_break=selection_cfg["max_post_break"], max_frames=max_frames,
                        post_break_screening=selection_cfg.get("post_break_screening", "separate"),
                        min_distance_gap=selection_cfg["min_distance_gap"],
                        min_energy_gap=selection_cfg["min_energy_gap_kcal"] * EV_PER_KCAL_MOL)
    rec.update({"candidates": int((sigma > threshold).sum()), "kept": len(idx), "break_index": bi,
                "indices": [int(i) for i in idx], "extensions": [float(ext[i]) for i in idx]})
    return idx, rec


def select_branch(path: Frames, n_images: int, window: float, exclude=()) -> tuple:
    """The intact images of a potential's COGEF path just below its maximum, to label whatever
    the committee's spread (``sampler.branch_images``): those with an extension within
    ``window`` Å below the highest intact image's (that one included), less ``exclude``
    (indices already selected), ``n_images`` of them spread evenly in extension: for each of
    ``n_images`` extensions evenly spaced over the window, the nearest image not yet taken.

    This is where a potential's chain breaks late: it leaves the symmetric path and holds an
    asymmetric branch the reference does not have, and the committee, trained on the same
    data, can agree on it (benchmarks/README.md, "COGEF: the threshold of the stable-branch
    check").

    Returns
    -------
    (indices (M,) int, record): record has ``window``, ``candidates``, ``kept``,
    ``extension_at_max``, ``indices`` and ``extensions`` (JSON types).
    """
    if n_images < 0 or window < 0:
        raise ValueError(f"branch images {n_images} and window {window} Å must be >= 0")
    rec = {"window": float(window), "candidates": 0, "kept": 0, "extension_at_max": None}
    if len(path) == 0 or n_images == 0:
        return np.zeros(0, dtype=int), rec
    ext = np.asarray(path.extras["extension"], dtype=float)
    intact = np.asarray(path.extras["intact"]) > 0.5
    if not intact.any():
        return np.zeros(0, dtype=int), rec
    energy = np.asarray(path.extras["potential_energy"], dtype=float)
    k = int(np.argmax(np.where(intact, energy, -np.inf)))
    cand = np.flatnonzero(intact & (ext >= ext[k] - window) & (ext <= ext[k]))
    cand = np.setdiff1d(cand, np.asarray(list(exclude), dtype=int))
    # spread in extension, not in index: the scan refines its images near the maximum
    targets = np.linspace(ext[k] - window, ext[k], int(n_images)) if n_images > 1 else np.array([ext[k]])
    chosen: list[int] = []
    for t in targets:
        free = [int(c) for c in cand if int(c) not in chosen]
        if not free:
            break
        chosen.append(min(free, key=lambda c: (abs(ext[c] - t), c)))
    idx = np.array(sorted(chosen, key=lambda c: ext[c]), dtype=int)
    rec.update({"candidates": len(cand), "kept": len(idx), "extension_at_max": float(ext[k]),
                "indices": [int(i) for i in idx], "extensions": [float(ext[i]) for i in idx]})
    return idx, rec


def cap_frames(kept: Frames, max_frames: int | None, post_break_share: float | None = None) -> Frames:
    """Step 4 over all replicas of an iteration: at most ``max_frames`` (None: no cap),
    spread evenly over the kept list.

    With ``post_break_share`` s (the frames carrying extras ``post_break`` 1 are at or past
    their replica's break): at most round(s · ``max_frames``) post-break frames and the
    pre-break frames the rest, each spread evenly over its own kept frames; a side with
    fewer frames than its room leaves the rest to the other. Without it the post-break
    frames get the share they have among the kept ones (about 1 in 9 on the hexane
    campaign's pulls: the intact chain's screening keeps a frame per kcal/mol over ~6 eV,
    the fragments' over ~1 eV)."""
    if max_frames is None or len(kept) <= max_frames:
        return kept
    max_frames = int(max_frames)
    if post_break_share is None or "post_break" not in kept.extras:
        return kept.subset(_even(len(kept), max_frames))
    post = np.flatnonzero(np.asarray(kept.extras["post_break"]) > 0.5)
    pre = np.setdiff1d(np.arange(len(kept)), post)
    n_post = min(len(post), int(round(float(post_break_share) * max_frames)))
    n_pre = min(len(pre), max_frames - n_post)
    n_post = min(len(post), max_frames - n_pre)
    return kept.subset(np.sort(np.concatenate([pre[_even(len(pre), n_pre)], post[_even(len(post), n_post)]])))
