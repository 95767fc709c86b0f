"""Evaluation of an iteration against the reference, and the campaign's stop rule.

Two observables of the same event are compared:

* **SMD**: E_a = max W read up to the break (:func:`rarelearn.chem.barrier.read_replica`),
  a mean over replicas with its standard error (:func:`rarelearn.chem.barrier.barrier_record`,
  :func:`rarelearn.chem.barrier.delta_record`); one replica scatters by ~4 kcal/mol.
* **COGEF**: the maximum E_max of the constrained-geometry profile
  (:mod:`rarelearn.md.cogef`), deterministic.

Energies in eV inside; the kcal/mol figures written next to them are for reports.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..chem.barrier import _finite
from ..units import KCAL_MOL_PER_EV

__all__ = ["breaks_other_bond", "cogef_comparison", "committee_cogef", "members_text", "no_barrier_reason",
           "replica_plan", "smd_bond_comparison", "smd_bonds_text", "stop_rule_met", "STOP_OBSERVABLES"]

STOP_OBSERVABLES = ("cogef", "smd", "both")


def no_barrier_reason(nnp: dict) -> str | None:
    """Why an iteration has no SMD barrier (None when it has one), in one line naming every
    replica that has none and why: stopped before the pull (during the relaxation, with its
    blow-up), or pulled without breaking a bond.

    ``nnp`` is :func:`rarelearn.chem.barrier.barrier_of_files`'s record."""
    if nnp["n_replicas"] > 0:
        return None
    parts = []
    failed = nnp.get("failed_replicas") or []
    if failed:
        reasons = nnp.get("failed_reasons") or [""] * len(failed)
        named = "; ".join(f"{Path(p).stem}: {r}" if r else Path(p).stem for p, r in zip(failed, reasons))
        parts.append(f"{len(failed)} replica(s) stopped before the pull began ({named})")
    if nnp["unbroken"]:
        reasons = sorted({r["stop_reason"] for r in nnp["replica_records"] if not r["broke"]})
        parts.append(f"{nnp['unbroken']} replica(s) broke no bond (stopped: {', '.join(reasons)})")
    return "; ".join(parts) or "no replicas"


def _bond_counts(records: Sequence[dict]) -> str:
    """``C-C 1-2 ×2, C-C 3-4 ×2``: the bonds the broken replicas broke, with their counts."""
    labels = [r["broken_label"] for r in records]
    return ", ".join(f"{lab} ×{labels.count(lab)}" for lab in sorted(set(labels))) or "none"


def smd_bond_comparison(nnp_records: Sequence[dict], ref_records: Sequence[dict], same_place=None) -> dict:
    """Which bond the potential's SMD pulls break, against the reference's.

    E_a compares the work up to *a* break; a potential whose pulls break another bond than
    the reference's (hexane: an inner C–C bond where GFN2-xTB breaks a terminal one) has the
    wrong weakest bond under tension, whatever its ΔE_a says.

    Parameters
    ----------
    nnp_records, ref_records : replica records (:func:`rarelearn.chem.barrier.read_replica`)
    same_place : ``same_place(bond_a, bond_b)``: whether two bonds sit at the same place
        along the load path (e.g. C0–C1 and C4–C5 of hexane pulled end to end); None: the
        same atom pair only

    Returns
    -------
    dict: ``smd_same_bond_fraction``: share of the potential's broken replicas whose bond
    sits where a reference replica's broke (NaN when either side has none);
    ``smd_same_bond_replicas`` (their count); ``nnp_smd_bonds`` and ``ref_smd_bonds``:
    ``C-C 1-2 ×2, C-C 3-4 ×2``.
    """
    nnp = [r for r in nnp_records if r.get("broke") and r.get("broken_bond") is not None]
    ref = [r for r in ref_records if r.get("broke") and r.get("broken_bond") is not None]

    def same(a, b) -> bool:
        return list(a) == list(b) or (same_place is not None and bool(same_place(a, b)))

    hits = [any(same(r["broken_bond"], q["broken_bond"]) for q in ref) for r in nnp]
    return {
        "smd_same_bond_fraction": float(np.mean(hits)) if nnp and ref else math.nan,
        "smd_same_bond_replicas": int(sum(hits)),
        "nnp_smd_bonds": _bond_counts(nnp),
        "ref_smd_bonds": _bond_counts(ref),
    }


def breaks_other_bond(ev: dict, observable: str = "both") -> bool:
    """Whether an evaluation breaks another bond than the reference's in what ``observable``
    looks at: fewer than half of its SMD pulls at the reference's bond (``smd``, ``both``;
    :func:`smd_bond_comparison`), or its COGEF profile elsewhere (``cogef``, ``both``).
    An evaluation without the comparison (made before it existed, or nothing broke) does not."""
    frac = ev.get("smd_same_bond_fraction")
    smd = _finite(frac) and frac < 0.5
    cogef = ev.get("cogef_same_bond") is False
    return {"smd": smd, "cogef": cogef}.get(observable, smd or cogef)


def smd_bonds_text(rec: dict) -> str:
    """`` breaks C-C 1-2 ×2, C-C 3-4 ×2 (reference C-C 0-1 ×4): another bond than the
    reference's in 4 of 4 replicas``, or "" when the evaluation has no bond comparison or
    every replica broke where the reference's did."""
    frac = rec.get("smd_same_bond_fraction")
    if frac is None or not _finite(frac) or frac == 1.0:
        return ""
    n = rec.get("nnp_n_replicas") or 0
    other = n - (rec.get("smd_same_bond_replicas") or 0)
    return (f"breaks {rec.get('nnp_smd_bonds')} (reference {rec.get('ref_smd_bonds')}): another bond than "
            f"the reference's in {other} of {n} replicas")


def _e_at_f_max(rec: dict) -> float:
    """E at the force maximum of a COGEF summary (eV): its ``e_at_f_max``, or for a summary
    written before that field, interpolated on its intact images."""
    from ..md.cogef import energy_at_f_max

    if rec.get("e_at_f_max") is not None:
        return float(rec["e_at_f_max"])
    if rec.get("extension_at_f_max") is None:
        return math.nan
    return energy_at_f_max(rec["extension"], rec["energy"], rec.get("intact", np.ones(len(rec["extension"]), bool)),
                           rec["extension_at_f_max"])


def _loaded_chain_delta(nnp: dict, x_r: np.ndarray, e_r: np.ndarray, ref: dict, shift: float):
    """The potential's energy less the reference's (eV) on the reference's images below both
    breaks, the potential's intact images moved by ``shift`` Å along the reference's extension
    axis (0: equal extension; the rest-distance difference: equal pulled distance). Returns the
    mask of the reference's images compared and the differences on them."""
    x_all = np.asarray(nnp["extension"], float) + shift
    e_n = np.asarray(nnp["energy"], float)
    # the potential's intact images only: between its last intact image and its first broken
    # one a linear interpolation would read the drop of its break as the loaded chain's energy
    intact = np.asarray(nnp.get("intact", np.ones(x_all.size, bool)), bool)
    x_n, e_n = x_all[intact], e_n[intact]
    upto = min(ref["break_extension"] if ref.get("broke") else x_r.max(),
               nnp["break_extension"] + shift if nnp.get("broke") else x_all.max())
    keep = (x_r < upto) & (x_r <= x_n.max()) & (x_r >= x_n.min())
    return keep, np.interp(x_r[keep], x_n, e_n) - e_r[keep]


def cogef_comparison(nnp: dict, ref: dict, same_place=None) -> dict:
    """The potential's COGEF profile against the reference's (records of
    :meth:`rarelearn.md.cogef.CogefProfile.summary`, with ``extension``/``energy`` arrays).

    Returns
    -------
    dict: ``cogef_delta_e_max`` (eV) and ``cogef_abs_delta_e_max_kcal``, NaN when either
    side did not break within its scan (its maximum is then only a lower bound);
    ``cogef_delta_f_max`` (eV/Å); ``cogef_rmse_to_break_kcal``: RMS difference of the two
    profiles E(Δ) on the reference's images up to the earlier of the two breaks (the
    potential's intact images interpolated linearly); ``cogef_same_bond``: both broke the same
    atom pair, or (with ``same_place(bond_a, bond_b)``, e.g. from
    :func:`rarelearn.chem.breaks.bond_position`) bonds at the same place along the load path;
    the post-break rises of both (eV). ``cogef_intact_delta_kcal``: the difference at the
    last of those images (its extension ``cogef_intact_extension``, Å), where both chains
    still hold; ``cogef_break_shift``: the potential's break extension less the reference's
    (Å; NaN unless both broke). Together they make up ΔE_max: ΔE_max ≈
    ``cogef_intact_delta_kcal`` + F_max(reference) × ``cogef_break_shift`` (hexane, 33
    members of 5 campaigns: RMS residual 0.06–0.25 kcal/mol, ``benchmarks/intact_branch.py``), the
    energy of the loaded chain and the point where it gives way. Near its end the branch
    rises with the force, 105 kcal/mol per Å for hexane, so the second term can swamp the first.
    ``cogef_delta_e_at_f_max_kcal``: the difference of the energies at each profile's own force
    maximum, where the chain gives way; ``cogef_e_max_past_f_max_kcal`` and
    ``ref_cogef_e_max_past_f_max_kcal``: how much of each E_max lies past that point (~0 where
    the chain snaps; tens of kcal/mol where a bond lets go gradually and the branch ends at its
    break length, as propane's and butane's under GFN2-xTB).
    ``cogef_d0_delta``: the pulled atoms' distance in the potential's relaxed molecule less the
    reference's (Å; NaN for summaries without ``d0``); ``cogef_break_shift_distance``: the break
    shift in that distance (``cogef_break_shift`` + ``cogef_d0_delta``), and
    ``cogef_intact_delta_at_distance_kcal``: the loaded chains compared at equal pulled distance
    rather than equal extension, on the last reference image below both breaks. Both profiles
    start at their own rest, so a potential whose molecule at rest is 0.18 Å short (CCC angles
    3–4° small: one hexane member of issue 20) reads −19 kcal/mol at equal extension near the
    break and +0.2 Å of break shift where, at equal distance, its chain is within 2 kcal/mol
    and breaks 0.02 Å from the reference.
    """
    both = bool(nnp.get("broke")) and bool(ref.get("broke"))
    d_e = nnp["e_max"] - ref["e_max"] if both else math.nan
    e_f_n, e_f_r = _e_at_f_max(nnp), _e_at_f_max(ref)
    d_f = nnp["f_max"] - ref["f_max"]
    x_r, e_r = np.asarray(ref["extension"], float), np.asarray(ref["energy"], float)
    keep, diff = _loaded_chain_delta(nnp, x_r, e_r, ref, 0.0)
    rmse = float(np.sqrt(np.mean(diff ** 2))) * KCAL_MOL_PER_EV if keep.any() else math.nan
    d0_delta = float(nnp["d0"] - ref["d0"]) if nnp.get("d0") is not None and ref.get("d0") is not None else math.nan
    intact_at_d = math.nan
    if math.isfinite(d0_delta):          # the same comparison on the pulled distance d0 + Δ
        keep_d, diff_d = _loaded_chain_delta(nnp, x_r, e_r, ref, d0_delta)
        intact_at_d = float(diff_d[-1]) * KCAL_MOL_PER_EV if keep_d.any() else math.nan
    shift = float(nnp["break_extension"] - ref["break_extension"]) if both else math.nan
    return {
        "cogef_delta_e_max": d_e,
        "cogef_delta_e_max_kcal": d_e * KCAL_MOL_PER_EV,
        "cogef_abs_delta_e_max_kcal": abs(d_e) * KCAL_MOL_PER_EV,
        "cogef_delta_f_max": d_f,
        "cogef_rmse_to_break_kcal": rmse,
        "cogef_intact_delta_kcal": float(diff[-1]) * KCAL_MOL_PER_EV if keep.any() else math.nan,
        "cogef_intact_extension": float(x_r[keep][-1]) if keep.any() else math.nan,
        "cogef_break_shift": shift,
        "cogef_d0_delta": d0_delta,
        "cogef_break_shift_distance": shift + d0_delta,
        "cogef_intact_delta_at_distance_kcal": intact_at_d,
        "cogef_same_bond": both and (list(nnp["broken_bond"]) == list(ref["broken_bond"]) or (
            same_place is not None and bool(same_place(nnp["broken_bond"], ref["broken_bond"])))),
        "cogef_delta_e_at_f_max_kcal": (e_f_n - e_f_r) * KCAL_MOL_PER_EV,
        "cogef_e_max_past_f_max_kcal": (nnp["e_max"] - e_f_n) * KCAL_MOL_PER_EV if both else math.nan,
        "ref_cogef_e_max_past_f_max_kcal": (ref["e_max"] - e_f_r) * KCAL_MOL_PER_EV if ref.get("broke") else math.nan,
        "cogef_post_break_rise": nnp.get("post_break_rise", math.nan),
        "ref_cogef_post_break_rise": ref.get("post_break_rise", math.nan),
    }


def replica_plan(comparison: dict, replicas: int, close_replicas: int, close_kcal: float) -> dict:
    """How many SMD replicas of the potential an iteration's barrier is read from
    (``evaluation.close_replicas``): ``replicas`` while the deterministic COGEF comparison
    (:func:`cogef_comparison`) says the potential is far from the reference, all
    ``close_replicas`` once it is close: both profiles broke the same bond (the same event)
    and |ΔE_max| <= ``close_kcal``. One replica's E_a scatters by ~4 kcal/mol, so the SMD
    standard error is worth buying only where the barrier is nearly right; far from it, a
    few replicas show that already.

    Returns
    -------
    dict: ``replicas`` (the count to run), ``close`` (bool), ``cogef_abs_delta_e_max_kcal``,
    ``cogef_same_bond``, ``close_kcal``, ``base_replicas``, ``close_replicas`` and
    ``reason`` (one line).
    """
    if close_replicas <= replicas:
        raise ValueError(f"close_replicas ({close_replicas}) must be more than replicas ({replicas})")
    err = comparison.get("cogef_abs_delta_e_max_kcal", math.nan)
    err = math.nan if err is None else float(err)
    same = bool(comparison.get("cogef_same_bond"))
    if not _finite(err):
        close, why = False, "the COGEF profiles did not both break"
    elif not same:
        close, why = False, f"the potential's COGEF profile breaks another bond than the reference's (|ΔE_max| {err:.1f} kcal/mol)"
    elif err > close_kcal:
        close, why = False, f"COGEF |ΔE_max| {err:.1f} kcal/mol > {close_kcal:g}"
    else:
        close, why = True, f"COGEF |ΔE_max| {err:.1f} kcal/mol <= {close_kcal:g}, the reference's bond"
    n = close_replicas if close else replicas
    return {"replicas": n, "close": close, "cogef_abs_delta_e_max_kcal": err, "cogef_same_bond": same,
            "close_kcal": float(close_kcal), "base_replicas": int(replicas), "close_replicas": int(close_replicas),
            "reason": f"{why}: {n} SMD replicas"}


def committee_cogef(members: Sequence[dict], ref: dict) -> dict:
    """Every member's COGEF maximum against the reference's (``evaluation.cogef_members:
    all``): the committee's own uncertainty of the barrier. Members fitted to the same data
    agree where the data are, and can part on the stretched bond: one breaks near the
    reference's extension, another holds the bond to the end of the scan. The best member's
    |ΔE_max| alone can then be small by luck.

    Parameters
    ----------
    members : profile summaries (:meth:`rarelearn.md.cogef.CogefProfile.summary` with
        ``member``), one per member
    ref : the reference's profile summary

    Returns
    -------
    dict: ``cogef_members`` (per member: ``member``, ``broke``, ``e_max`` eV,
    ``delta_e_max_kcal`` (NaN when it did not break), ``break_extension`` Å,
    ``broken_label``); ``cogef_members_n``, ``cogef_members_broke``;
    ``cogef_members_worst_abs_delta_kcal``: the largest |ΔE_max| over the members, NaN
    unless every member and the reference broke; ``cogef_members_e_max_spread_kcal``: the
    range of E_max over the members that broke (NaN with fewer than two).
    """
    rows = []
    for m in members:
        broke = bool(m.get("broke")) and bool(ref.get("broke"))
        rows.append({"member": m.get("member"), "broke": bool(m.get("broke")), "e_max": m["e_max"],
                     "delta_e_max_kcal": (m["e_max"] - ref["e_max"]) * KCAL_MOL_PER_EV if broke else math.nan,
                     "break_extension": m.get("break_extension") if m.get("broke") else math.nan,
                     "broken_label": m.get("broken_label")})
    deltas = [r["delta_e_max_kcal"] for r in rows]
    e_broke = [r["e_max"] for r in rows if r["broke"]]
    every = bool(rows) and all(_finite(d) for d in deltas)
    return {
        "cogef_members": rows,
        "cogef_members_n": len(rows),
        "cogef_members_broke": len(e_broke),
        "cogef_members_worst_abs_delta_kcal": max(abs(d) for d in deltas) if every else math.nan,
        "cogef_members_e_max_spread_kcal": ((max(e_broke) - min(e_broke)) * KCAL_MOL_PER_EV
                                            if len(e_broke) > 1 else math.nan),
    }


def members_text(deltas: Sequence) -> str:
    """``every member: +6.8, +3.1, no break`` for the members' COGEF ΔE_max (kcal/mol, in
    member order; None or NaN: the member never broke), or "" without any."""
    if not deltas:
        return ""
    return "every member: " + ", ".join(f"{d:+.1f}" if _finite(d) else "no break" for d in deltas)


def _smd_met(ev: dict, stop: dict) -> bool:
    """|ΔE_a| and its standard error within target, and most of the potential's pulls break
    the bond the reference's break (:func:`smd_bond_comparison`; an evaluation made before
    that comparison existed is not judged on it)."""
    a, se = ev.get("abs_delta_ea_kcal"), ev.get("delta_ea_stderr_kcal")
    if not (_finite(a) and _finite(se) and a < stop["target_kcal"] and se <= stop["max_stderr_kcal"]):
        return False
    return _finite(ev.get("smd_same_bond_fraction", 1.0)) and not breaks_other_bond(ev, "smd")


def _cogef_met(ev: dict, stop: dict) -> bool:
    """|ΔE_max| of the best member within target and its profile breaking the reference's
    bond, and every member's |ΔE_max| within target when the iteration has every member's
    profile (:func:`committee_cogef`)."""
    a = ev.get("cogef_abs_delta_e_max_kcal")
    if not (_finite(a) and a < stop["cogef_target_kcal"]) or breaks_other_bond(ev, "cogef"):
        return False
    if ev.get("cogef_members"):
        worst = ev.get("cogef_members_worst_abs_delta_kcal")
        return _finite(worst) and worst < stop["cogef_target_kcal"]
    return True


def stop_rule_met(history: Sequence[dict], stop: dict) -> bool:
    """Whether the campaign has converged; always False when the rule is disabled.

    ``stop.observable`` picks what must hold in each of the last ``stop.consecutive``
    evaluations: ``cogef``: |ΔE_max| < ``cogef_target_kcal`` (both profiles broke, the same
    bond; every member's, when the evaluation has every member's profile);
    ``smd``: |ΔE_a| (read up to the break) < ``target_kcal`` with a standard error
    ≤ ``max_stderr_kcal``, and at least half the potential's pulls break the bond the
    reference's break; ``both``: both. A missing or non-finite figure (every replica
    blown up or unbroken, a profile that never broke) never counts as converged.
    """
    if not stop or not stop.get("enabled", False):
        return False
    n = int(stop.get("consecutive", 1))
    if len(history) < n:
        return False
    observable = stop.get("observable", "smd")
    if observable not in STOP_OBSERVABLES:
        raise ValueError(f"campaign.stop.observable: {observable!r} is not one of {', '.join(STOP_OBSERVABLES)}")
    checks = {"cogef": (_cogef_met,), "smd": (_smd_met,), "both": (_cogef_met, _smd_met)}[observable]
    return all(check(ev, stop) for ev in history[-n:] for check in checks)
