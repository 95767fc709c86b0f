"""The model card: what the potential was trained on, how good it is, where it can be trusted."""
from __future__ import annotations

import datetime
import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_path
from ..dataset import Frames
from ..jsonio import read_json
from ..models.committee import ModelError

from .choice import _finite


CARD_FORMAT = "rarelearn-potential-card"
CARD_VERSION = 1
#: What ``results/potential/`` holds.
POTENTIAL_FILES = ("ensemble.pt", "potential.ts", "card.json", "card.md", "card.rst")


# ---------------------------------------------------------------------- the card

def _members_row(deltas) -> str:
    """``; every member: …`` (:func:`rarelearn.learning.evaluation.members_text`), or nothing."""
    from ..learning.evaluation import members_text

    text = members_text(deltas)
    return f"; {text}" if text else ""


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dataset_counts(frames: Frames) -> dict:
    ok = frames.ok
    by_source: dict[str, int] = {}
    by_iteration: dict[str, int] = {}
    table: dict[str, dict[str, int]] = {}
    for s, i in zip(frames.source[ok], frames.iteration[ok]):
        s, i = str(s), str(int(i))
        by_source[s] = by_source.get(s, 0) + 1
        by_iteration[i] = by_iteration.get(i, 0) + 1
        table.setdefault(s, {})
        table[s][i] = table[s].get(i, 0) + 1
    labellers = sorted({str(x) for x in frames.labeller[ok]})
    return {"frames": int(ok.sum()), "by_source": by_source,
            "by_iteration": dict(sorted(by_iteration.items(), key=lambda kv: int(kv[0]))),
            "by_source_and_iteration": table, "labellers": labellers,
            "note": "iteration -1 is the reference MD; frames of iteration i were chosen by iteration i's committee"}


def _num(x):
    return float(x) if _finite(x) else None


def _uq_thresholds(path) -> dict:
    import h5py

    with h5py.File(path, "r") as h5:
        thr = {name: float(g.attrs["threshold"]) for name, g in h5.items() if "threshold" in g.attrs}
    finite = [v for v in thr.values() if math.isfinite(v)]
    return {"per_replica": {k: (v if math.isfinite(v) else None) for k, v in thr.items()},
            "mean": float(np.mean(finite)) if finite else None}


#: How the best member was chosen (model.best_member), in the card's words.
BEST_RULES = {"validation": "the lowest force MAE over the data set",
              "cogef_median": "the committee's median COGEF maximum"}


def build_card(*, choice: dict, evaluation: dict, model, best_member: int, member, frames: Frames,
               trained: dict, labeller_cfg: dict, smd_cfg: dict | None, molecule, pulled: Sequence[int],
               uq: dict, final_uq: dict, reference: dict | None = None, files: dict | None = None,
               source_files: dict | None = None, best_rule: str = "validation") -> dict:
    """The model card as a JSON-ready dict (see :func:`build_potential` for the inputs;
    ``best_rule``: how the best member was chosen, best.json's ``rule``)."""
    from .. import __version__

    ev = evaluation
    family = getattr(model, "family", "ani")
    err = {
        "smd_delta_ea_kcal": _num(ev.get("delta_ea_kcal")),
        "smd_delta_ea_stderr_kcal": _num(ev.get("delta_ea_stderr_kcal")),
        "smd_abs_delta_ea_kcal": _num(ev.get("abs_delta_ea_kcal")),
        "smd_replicas_with_barrier": ev.get("nnp_n_replicas"),
        "smd_unbroken_replicas": ev.get("nnp_unbroken"),
        "smd_ea_potential_eV": _num(ev.get("nnp_ea_mean")),
        "smd_ea_reference_eV": _num(ev.get("ref_ea_mean")),
        "no_barrier_reason": ev.get("no_barrier_reason"),
        "cogef_delta_e_max_kcal": _num(ev.get("cogef_delta_e_max_kcal")),
        "cogef_abs_delta_e_max_kcal": _num(ev.get("cogef_abs_delta_e_max_kcal")),
        "cogef_e_max_potential_eV": _num(ev.get("nnp_cogef_e_max")),
        "cogef_e_max_reference_eV": _num(ev.get("ref_cogef_e_max")),
        "cogef_rmse_to_break_kcal": _num(ev.get("cogef_rmse_to_break_kcal")),
        "cogef_intact_delta_kcal": _num(ev.get("cogef_intact_delta_kcal")),
        "cogef_intact_extension_A": _num(ev.get("cogef_intact_extension")),
        "cogef_break_extension_potential_A": _num(ev.get("nnp_cogef_break_extension")),
        "cogef_break_extension_reference_A": _num(ev.get("ref_cogef_break_extension")),
        "cogef_post_break_rise_potential_eV": _num(ev.get("cogef_post_break_rise")),
        "cogef_post_break_rise_reference_eV": _num(ev.get("ref_cogef_post_break_rise")),
        "smd_post_break_work_delta_kcal": _num(ev.get("post_break_work_delta_kcal")),
        # which bond breaks: a potential with the wrong weakest bond under tension is wrong
        # whatever its barrier error (None: an evaluation made before this was recorded)
        "smd_bonds_potential": ev.get("nnp_smd_bonds"),
        "smd_bonds_reference": ev.get("ref_smd_bonds"),
        "smd_same_bond_fraction": _num(ev.get("smd_same_bond_fraction")),
        "cogef_bond_potential": ev.get("nnp_cogef_broken_label"),
        "cogef_bond_reference": ev.get("ref_cogef_broken_label"),
        "cogef_same_bond": ev.get("cogef_same_bond"),
        "unseen_frames": ev.get("unseen_frames"),
        "unseen_energy_mae_eV": _num(ev.get("unseen_energy_mae")),
        "unseen_force_mae_eV_per_A": _num(ev.get("unseen_force_mae")),
        "cogef_frames_energy_mae_eV": _num(ev.get("cogef_frames_energy_mae")),
        # every member's COGEF ΔE_max (evaluation.cogef_members: all): the committee's own
        # uncertainty of the barrier; None when only the best member's profile was made
        "cogef_members_delta_e_max_kcal": ([_num(r["delta_e_max_kcal"]) for r in ev["cogef_members"]]
                                           if ev.get("cogef_members") else None),
        "cogef_members_worst_abs_delta_kcal": _num(ev.get("cogef_members_worst_abs_delta_kcal")),
        "measured_with": f"member {best_member} (the best member, {BEST_RULES.get(best_rule, best_rule)}) drove "
                         "the SMD pulls and the COGEF scan; "
                         "the unseen-frame MAEs are of the committee mean",
    }
    energy_from = "committee mean" if member is None else f"member {member}"
    card = {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rarelearn_version": __version__,
        "molecule": {"formula": molecule.get_chemical_formula(), "n_atoms": len(molecule),
                     "pulled_atoms": [int(pulled[0]), int(pulled[1])]},
        "elements": list(model.elements),
        "model": {"family": family, "members": int(model.n_members), "best_member": int(best_member),
                  "best_member_rule": best_rule,
                  "energy_from": energy_from, "spec": model.spec,
                  "torchscript": (files or {}).get("potential.ts") is not None},
        "labeller": {"name": labeller_cfg.get("name"), "options": labeller_cfg.get("options") or {}},
        "iteration": {"chosen": int(choice["iteration"]), "rule": choice["rule"], "reason": choice["reason"],
                      "final": int(choice["final_iteration"]), "observable": choice.get("observable"),
                      "scores": choice.get("scores")},
        "dataset": _dataset_counts(frames),
        "errors": err,
        "reference": reference or {},
        "uncertainty": {
            "energy_std_definition": "standard deviation (ddof 0) of the member energies, eV",
            "force_std_definition": "max over atoms of sqrt(mean_k |F_k,i - mean_k F_k,i|^2), eV/Å",
            "uq_threshold_eV": final_uq.get("mean"),
            "uq_threshold_per_replica_eV": final_uq.get("per_replica"),
            "uq_threshold_iteration": int(choice["final_iteration"]),
            "chosen_iteration_uq_threshold_eV": uq.get("mean"),
            "warn_energy_std_above_eV": trained["energy_std"]["max"],
            "warn_force_std_above_eV_per_A": trained["force_std"]["max"],
        },
        "trained_range": trained,
        "smd_protocol": {k: v for k, v in (smd_cfg or {}).items() if k != "batch"},
        "files": files or {},
        "sources": source_files or {},
    }
    return card


def _fmt(x, spec=".2f", unit="") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:{spec}}{unit}"


def _bond_rows(err: dict) -> list[tuple[str, str]]:
    """The card's "Bond broken" row: which bond the potential's SMD pulls and COGEF scan
    break against the reference's (same place along the load path or not); none for a card
    made before this was recorded."""
    if err.get("smd_bonds_potential") is None:
        return []
    frac = err.get("smd_same_bond_fraction")
    text = (f"SMD: {err['smd_bonds_potential']} (reference {err['smd_bonds_reference']}); "
            f"the reference's bond in {_fmt(None if frac is None else 100 * frac, '.0f')} % of the pulls")
    if err.get("cogef_bond_potential") is not None:
        same = {True: "the same place along the load path", False: "another bond"}.get(err.get("cogef_same_bond"), "n/a")
        text += (f"; COGEF: {err['cogef_bond_potential']} (reference {err['cogef_bond_reference']}): {same}")
    return [("Bond broken", text)]


def _card_rows(card: dict) -> list[tuple[str, str]]:
    err, unc, tr, it, ds = card["errors"], card["uncertainty"], card["trained_range"], card["iteration"], card["dataset"]
    smd = (f"{_fmt(err['smd_delta_ea_kcal'], '+.2f')} ± {_fmt(err['smd_delta_ea_stderr_kcal'])} kcal/mol "
           f"({err['smd_replicas_with_barrier']} replicas with a barrier)")
    if err.get("no_barrier_reason"):
        smd += f"; {err['no_barrier_reason']}"
    lab = card["labeller"]
    opts = ", ".join(f"{k}={v}" for k, v in lab["options"].items())
    rows = [
        ("Molecule", f"{card['molecule']['formula']} ({card['molecule']['n_atoms']} atoms), pulled atoms "
                     f"{card['molecule']['pulled_atoms'][0]} and {card['molecule']['pulled_atoms'][1]}"),
        ("Elements", ", ".join(card["elements"])),
        ("Model", f"{card['model']['family']} committee of {card['model']['members']}; energy and forces: "
                  f"{card['model']['energy_from']}"),
        ("Labeller", lab["name"] + (f" ({opts})" if opts else "")),
        ("Iteration", f"{it['chosen']} of 0–{it['final']} ({it['rule']}: {it['reason']})"),
        ("Data set", f"{ds['frames']} frames; by source: "
                     + ", ".join(f"{k} {v}" for k, v in ds["by_source"].items())
                     + "; by iteration: " + ", ".join(f"{k}: {v}" for k, v in ds["by_iteration"].items())),
        ("Barrier error, SMD (ΔE_a ± SE)", smd),
        *_bond_rows(err),
        *_reference_rows(card.get("reference") or {}),
        ("Barrier error, COGEF (ΔE_max)", f"{_fmt(err['cogef_delta_e_max_kcal'], '+.2f')} kcal/mol"
                                          + _members_row(err.get("cogef_members_delta_e_max_kcal"))),
        # |ΔE_max| alone can be met by a profile wrong on both sides of its maximum: the shape too
        ("COGEF profile", f"RMS difference to the break {_fmt(err.get('cogef_rmse_to_break_kcal'))} kcal/mol, "
                          f"{_fmt(err.get('cogef_intact_delta_kcal'), '+.2f')} kcal/mol at Δ = "
                          f"{_fmt(err.get('cogef_intact_extension_A'))} Å where both chains still hold; "
                          f"breaks at Δ = {_fmt(err.get('cogef_break_extension_potential_A'))} Å (reference "
                          f"{_fmt(err.get('cogef_break_extension_reference_A'))} Å); energy rise after the break "
                          f"{_fmt(err.get('cogef_post_break_rise_potential_eV'), '.3f')} eV (reference "
                          f"{_fmt(err.get('cogef_post_break_rise_reference_eV'), '.3f')} eV)"),
        ("MAE on unseen frames", f"energy {_fmt(err['unseen_energy_mae_eV'], '.4f')} eV, forces "
                                 f"{_fmt(err['unseen_force_mae_eV_per_A'], '.4f')} eV/Å "
                                 f"({err['unseen_frames']} reference SMD frames)"),
        ("UQ threshold at the end", f"{_fmt(unc['uq_threshold_eV'], '.4f')} eV (iteration "
                                    f"{unc['uq_threshold_iteration']}, mean over replicas)"),
        *_trained_rows(tr),
    ]
    rows.append(("Warns above", f"energy spread {_fmt(unc['warn_energy_std_above_eV'], '.4f')} eV or force spread "
                                f"{_fmt(unc['warn_force_std_above_eV_per_A'], '.4f')} eV/Å (largest on the training set)"))
    for name, f in card["files"].items():
        rows.append((f"SHA-256 {name}", f"{f['sha256']}"))
    return rows


def _trained_rows(tr: dict) -> list[tuple[str, str]]:
    """Where the potential was trained on this molecule; one row for a held-out molecule."""
    if not tr.get("frames"):
        return [("Trained on", f"none of this molecule's frames ({tr.get('untrained', 'no usable frame')})")]
    bonds = ", ".join(f"{k} {v['min']:.2f}–{v['max']:.2f} Å" for k, v in tr["bond_lengths"].items())
    rows = [("Trained energies", f"{tr['energy']['min']:.3f} to {tr['energy']['max']:.3f} eV "
                                 f"(span {tr['energy_above_min']:.3f} eV)"),
            ("Trained bond lengths", bonds)]
    if "pulled_distance" in tr:
        rows.append(("Trained pulled distance", f"{tr['pulled_distance']['min']:.2f}–"
                                                f"{tr['pulled_distance']['max']:.2f} Å"))
    return rows


#: How the reference's replica rounds ended (rarelearn.chem.barrier.RoundsToGo.reason), in words.
_ROUNDS_END = {"fixed": "a fixed count", "target_met": "target met", "max_replicas": "target not met, "
               "reference.max_replicas reached"}


def _reference_rows(ref: dict) -> list[tuple[str, str]]:
    """The reference SMD barrier: how precise, from how many replicas in how many rounds."""
    if ref.get("smd_ea_eV") is None:
        return []
    text = (f"E_a {_fmt(ref['smd_ea_eV'], '.3f')} eV, standard error {_fmt(ref.get('smd_ea_stderr_kcal'))} "
            f"kcal/mol, from {ref.get('smd_replicas')} replicas with a barrier")
    if ref.get("smd_replicas_run") is not None:
        target = ref.get("smd_target_stderr_kcal")
        reason = _ROUNDS_END.get(ref.get("smd_rounds_reason"), ref.get("smd_rounds_reason"))
        text += (f" ({ref['smd_replicas_run']} run in {ref.get('smd_rounds')} round(s); "
                 + (f"target standard error {target:g} kcal/mol, {reason})" if target is not None else f"{reason})"))
    return [("Reference barrier, SMD", text)]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


#: The rows of a family's card that hold for every molecule (shown once, before the molecules').
_SHARED_ROWS = ("Elements", "Model", "Labeller", "Iteration", "Warns above")


def _sections(card: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """(heading, rows) of the card: one untitled section for one molecule; for a family the
    rows every molecule shares, then one section per molecule."""
    if not card.get("molecules"):
        return [("", _card_rows(card))]
    views = [(m, _card_rows({**card, **m})) for m in card["molecules"]]
    first = card["molecules"][0]
    family = _card_rows({**card, **first, "uncertainty": {**first["uncertainty"], **card["uncertainty"]}})
    shared = [(k, v) for k, v in family if k in _SHARED_ROWS or k.startswith("SHA-256")]
    return [("", shared)] + [(f"{m['name']}" + (" (held out)" if m["held_out"] else ""),
                              [(k, v) for k, v in rows if (k, v) not in shared and k not in _SHARED_ROWS])
                             for m, rows in views]


def _measured_with(card: dict) -> str:
    return (card["molecules"][0] if card.get("molecules") else card)["errors"]["measured_with"]


def card_markdown(card: dict) -> str:
    """The card as a short Markdown page (``card.md``); a family's has a table per molecule."""
    lines = ["# The potential: model card", "",
             f"{_sentence(_measured_with(card))}. Made {card['created']} by rarelearn "
             f"{card['rarelearn_version']}; every figure is in `card.json`.", ""]
    for title, rows in _sections(card):
        lines += ([f"## {title}", ""] if title else []) + ["| | |", "|---|---|"]
        lines += [f"| {k} | {v.replace('|', chr(92) + '|')} |" for k, v in rows] + [""]
    lines += ["Use it: `rarelearn.load_potential(\"results/potential\")` (ASE calculator), "
                  "`torch.jit.load(\"results/potential/potential.ts\")` (no rarelearn needed), or "
                  "`python -m rarelearn.run smd --potential results/potential --structure my.xyz --pull I J`.", ""]
    return "\n".join(lines)


def card_rst(card: dict) -> str:
    """The card as reStructuredText (``card.rst``, the opening of the HTML report)."""
    out = ["The potential: model card", "==========================", "",
           f"{_sentence(_measured_with(card))}. Every figure is in ``results/potential/card.json``.", ""]
    for title, rows in _sections(card):
        out += [title, "-" * len(title), ""] if title else []
        out += [".. list-table::", "   :widths: 25 75", ""]
        for k, v in rows:
            v = v.replace("*", r"\*").replace("`", r"\`").replace("|", r"\|")
            out += [f"   * - {k}", f"     - {v}"]
        out.append("")
    return "\n".join(out)


def read_card(path) -> dict:
    """``card.json`` of a potential directory (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "card.json"
    card = read_json(path)
    if card.get("format") != CARD_FORMAT:
        raise ModelError(f"{path}: not a rarelearn potential card (format {card.get('format')!r})")
    return card


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
