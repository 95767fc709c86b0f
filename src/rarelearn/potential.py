"""The potential: the campaign's deliverable, its model card, and how to use it.

When a campaign ends (its stop rule met, or its last iteration evaluated) the workflow's
``potential`` rule writes ``results/potential/``:

``ensemble.pt``
    the chosen iteration's committee (a copy of ``results/iter_NNN/ensemble.pt``; read it
    with :func:`rarelearn.schnet.load_model`, or through :func:`load_potential`).
``potential.ts``
    the same committee compiled to TorchScript (ANI models), double precision; loads with
    ``torch.jit.load`` alone, without rarelearn or TorchANI (see :func:`export_potential`).
``card.json``, ``card.md``, ``card.rst``
    the model card (:func:`build_card`): what it was trained on, how good it is, where it
    can be trusted, and the SHA-256 of both model files. ``card.rst`` is the same card for
    the HTML report (``snakemake --report`` opens with it).

Which iteration (:func:`choose_iteration`)
------------------------------------------
* the stop rule (``campaign.stop``) holds after the last evaluated iteration: that
  iteration ("converged");
* otherwise ("best"): the iteration with the smallest error in the stop rule's observable,
  ``campaign.stop.observable`` (also when the rule is disabled): ``smd`` |ΔE_a| (kcal/mol),
  ``cogef`` |ΔE_max| (kcal/mol), ``both`` the larger of |ΔE_a| / target_kcal and
  |ΔE_max| / cogef_target_kcal. An iteration without that figure (no barrier, a profile
  that never broke) ranks after every iteration with one; ties go to the later iteration.
  When no iteration has the figure, the one with the lowest energy MAE on unseen frames.

The potential's energy
----------------------
By default the energy and forces are those of the iteration's *best member* (lowest force
MAE on its training set), the member that drove the campaign's SMD pulls and COGEF scan,
so the barrier errors on the card are this potential's. The whole committee gives the
uncertainty: ``energy_std`` (eV), the standard deviation (ddof 0) of the K member
energies, and ``force_std`` (eV/Å), the largest over atoms of the per-atom spread
``sqrt(mean_k |F_k,i − mean_k F_k,i|²)``. ``member="mean"`` gives the committee mean instead.

Trusted range
-------------
The card records the committee's spreads over the frames the chosen iteration was trained
on; a frame whose ``energy_std`` or ``force_std`` exceeds the largest seen there is outside
the trained range. :class:`PotentialCalculator` warns once (a :class:`OutsideTrainedRange`
warning) when that first happens, counts such frames, and flags each frame in its results.

Units: eV, Å, eV/Å; kcal/mol only for the barrier errors on the card.
"""
from __future__ import annotations

import copy
import datetime
import hashlib
import json
import logging
import math
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols as _SYMBOLS

from .dataset import Frames, atomic_path, read_frames
from .evaluation import stop_rule_met
from .geometry import covalent_bonds
from .model import HARTREE_EV, ModelError
from .pipeline import load_prepared_molecule, read_json, write_json

__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "POTENTIAL_FILES",
    "OutsideTrainedRange",
    "choose_iteration",
    "potential_sources",
    "committee_spread",
    "trained_range",
    "export_potential",
    "build_card",
    "card_markdown",
    "card_rst",
    "build_potential",
    "read_card",
    "PotentialCalculator",
    "load_potential",
]

log = logging.getLogger("rarelearn")

CARD_FORMAT = "rarelearn-potential-card"
CARD_VERSION = 1
#: What ``results/potential/`` holds.
POTENTIAL_FILES = ("ensemble.pt", "potential.ts", "card.json", "card.md", "card.rst")


class OutsideTrainedRange(UserWarning):
    """A frame's committee spread is larger than any the potential saw on its training data."""


# ---------------------------------------------------------------------- which iteration
def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _score(ev: dict, stop: dict) -> float:
    """The error the "best" rule ranks by (smaller is better; inf when missing)."""
    observable = stop.get("observable", "both")
    smd, cogef = ev.get("abs_delta_ea_kcal"), ev.get("cogef_abs_delta_e_max_kcal")
    if observable == "smd":
        return float(smd) if _finite(smd) else math.inf
    if observable == "cogef":
        return float(cogef) if _finite(cogef) else math.inf
    if not (_finite(smd) and _finite(cogef)):
        return math.inf
    return max(smd / float(stop.get("target_kcal", 1.0)), cogef / float(stop.get("cogef_target_kcal", 1.0)))


def choose_iteration(evaluations: Sequence[dict], stop: dict | None) -> dict:
    """Which iteration's committee is the potential (the rule in the module docstring).

    Parameters
    ----------
    evaluations : the campaign's evaluation records (``results/iter_NNN/evaluation.json``),
        in iteration order, up to the last one evaluated
    stop : the ``campaign.stop`` section

    Returns
    -------
    dict: ``iteration`` (int), ``rule`` ("converged", "best" or "lowest unseen MAE"),
    ``reason`` (one sentence), ``final_iteration`` (int), ``scores`` (per iteration, the
    figure ranked; None when missing)
    """
    if not evaluations:
        raise ValueError("no evaluated iteration: the campaign has not produced a potential yet")
    stop = dict(stop or {})
    final = int(evaluations[-1]["iteration"])
    observable = stop.get("observable", "both")
    scores = [_score(ev, stop) for ev in evaluations]
    out = {"final_iteration": final, "observable": observable,
           "scores": [s if math.isfinite(s) else None for s in scores]}
    if stop_rule_met(evaluations, stop):
        return {**out, "iteration": final, "rule": "converged",
                "reason": f"the stop rule ({observable}) holds after iteration {final}"}
    if any(math.isfinite(s) for s in scores):
        # smallest score; among equals the later iteration
        k = min(range(len(scores)), key=lambda i: (scores[i], -i))
        what = {"smd": "SMD |ΔE_a|", "cogef": "COGEF |ΔE_max|",
                "both": "max(SMD |ΔE_a| / target, COGEF |ΔE_max| / target)"}.get(observable, observable)
        why = "the stop rule is disabled" if not stop.get("enabled") else "the stop rule was not met"
        return {**out, "iteration": int(evaluations[k]["iteration"]), "rule": "best",
                "reason": f"{why}: the smallest {what} of iterations 0-{final}"}
    maes = [ev.get("unseen_energy_mae") for ev in evaluations]
    k = min(range(len(maes)), key=lambda i: (maes[i] if _finite(maes[i]) else math.inf, -i))
    return {**out, "iteration": int(evaluations[k]["iteration"]), "rule": "lowest unseen MAE",
            "reason": f"no iteration has a {observable} barrier error: the lowest energy MAE on unseen frames"}


def potential_sources(evaluation_paths: Sequence, stop: dict | None, results="results") -> dict:
    """The files the potential is built from, by :func:`choose_iteration` over the
    evaluations (the workflow's ``potential`` rule asks this for its inputs).

    Returns
    -------
    dict of paths (str): ``evaluations`` (list), ``ensemble``, ``best``, ``data`` (the data
    set the chosen iteration trained on), ``uq`` (its UQ file), ``final_uq`` (the last
    iteration's), ``molecule``, ``reference_barrier``, ``reference_cogef``; and
    ``choice`` (the dict of :func:`choose_iteration`).
    """
    evaluation_paths = [str(p) for p in evaluation_paths]
    choice = choose_iteration([read_json(p) for p in evaluation_paths], stop)
    i, final = choice["iteration"], choice["final_iteration"]
    it = f"{results}/iter_{i:03d}"
    return {
        "evaluations": evaluation_paths,
        "ensemble": f"{it}/ensemble.pt",
        "best": f"{it}/best.json",
        "data": f"{results}/iter_000/dataset.h5" if i == 0 else f"{results}/iter_{i - 1:03d}/merged.h5",
        "uq": f"{it}/uq.h5",
        "final_uq": f"{results}/iter_{final:03d}/uq.h5",
        "molecule": f"{results}/reference/molecule.xyz",
        "reference_barrier": f"{results}/reference/barrier.json",
        "reference_cogef": f"{results}/reference/cogef.json",
        "choice": choice,
    }


# ---------------------------------------------------------------------- committee spread
def committee_spread(member_energies: np.ndarray, member_forces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy and force spread of a committee per frame.

    Parameters
    ----------
    member_energies : (K, F) eV
    member_forces : (K, F, N, 3) eV/Å

    Returns
    -------
    energy_std : (F,) eV, standard deviation of the member energies (ddof 0)
    force_std : (F,) eV/Å, max over atoms of ``sqrt(mean_k |F_k,i − mean_k F_k,i|²)``
    """
    e = np.asarray(member_energies, dtype=np.float64)
    f = np.asarray(member_forces, dtype=np.float64)
    dev = f - f.mean(axis=0, keepdims=True)
    per_atom = np.sqrt((dev ** 2).sum(axis=-1).mean(axis=0))  # (F, N)
    return e.std(axis=0), per_atom.max(axis=-1)


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"min": None, "median": None, "p99": None, "max": None}
    return {"min": float(x.min()), "median": float(np.median(x)), "p99": float(np.percentile(x, 99)),
            "max": float(x.max())}


def trained_range(model, frames: Frames, reference_positions=None, pulled: Sequence[int] | None = None,
                  batch_size: int = 128) -> dict:
    """Where the potential was trained: energies, bond lengths and committee spreads over
    the usable frames of its training set.

    Parameters
    ----------
    model : the committee (either family)
    frames : the data set the committee was trained on
    reference_positions : (N, 3) Å, the molecule whose covalent bonds are measured (default:
        the first frame)
    pulled : the two pulled atoms (their distance is reported as ``pulled_distance``)

    Returns
    -------
    dict: ``frames``; ``energy`` {min, max} eV (reference labels); ``energy_above_min`` max,
    eV; ``bond_lengths`` {"C-C": {min, max, bonds}, ...} Å over the molecule's covalent bonds;
    ``pulled_distance`` {min, max} Å; ``energy_std`` and ``force_std`` statistics {min,
    median, p99, max} (eV, eV/Å) of the committee on these frames.
    """
    ok = frames.subset(frames.ok)
    if len(ok) == 0:
        raise ValueError("no usable frames in the training set")
    numbers = ok.numbers
    ref = ok.positions[0] if reference_positions is None else np.asarray(reference_positions, dtype=np.float64)
    bonds = covalent_bonds(numbers, ref)
    lengths = np.linalg.norm(ok.positions[:, bonds[:, 0]] - ok.positions[:, bonds[:, 1]], axis=-1)  # (F, M)
    by_pair: dict[str, dict] = {}
    for k, (i, j) in enumerate(bonds):
        a, b = sorted((_SYMBOLS[numbers[i]], _SYMBOLS[numbers[j]]), key=lambda s: (s != "C", s))
        key = f"{a}-{b}"
        rec = by_pair.setdefault(key, {"min": math.inf, "max": -math.inf, "bonds": 0})
        rec["min"] = min(rec["min"], float(lengths[:, k].min()))
        rec["max"] = max(rec["max"], float(lengths[:, k].max()))
        rec["bonds"] += 1
    out: dict[str, Any] = {
        "frames": len(ok),
        "energy": {"min": float(ok.energy.min()), "max": float(ok.energy.max())},
        "energy_above_min": float(ok.energy.max() - ok.energy.min()),
        "bond_lengths": by_pair,
    }
    if pulled is not None:
        i, j = int(pulled[0]), int(pulled[1])
        d = np.linalg.norm(ok.positions[:, i] - ok.positions[:, j], axis=-1)
        out["pulled_atoms"] = [i, j]
        out["pulled_distance"] = {"min": float(d.min()), "max": float(d.max())}
    e, f = model.energies_forces(numbers, ok.positions, batch_size=batch_size)
    es, fs = committee_spread(e, f)
    out["energy_std"] = _stats(es)
    out["force_std"] = _stats(fs)
    return out


# ---------------------------------------------------------------------- TorchScript
class _ScriptedPotential(torch.nn.Module):
    """The committee as one TorchScript module (ANI family), double precision.

    ``forward(numbers (N,) int64, positions (N, 3) or (B, N, 3) float64 Å) -> (B,) eV``,
    the potential's energy (member ``member``; the committee mean when ``member < 0``);
    ``member_energies`` -> (K, B) eV; ``energy_forces`` -> ((B,) eV, (B, N, 3) eV/Å).
    Self energies are added in float64 from the spec's eV values, as the calculator does.
    """

    def __init__(self, ani, self_energies: dict, member: int) -> None:
        super().__init__()
        self.species_converter = ani.species_converter
        self.aev_computer = ani.aev_computer
        self.neural_networks = ani.neural_networks
        sae = torch.zeros(119, dtype=torch.float64)
        known = torch.zeros(119, dtype=torch.bool)
        from ase.data import atomic_numbers

        for el, e in self_energies.items():
            sae[atomic_numbers[el]] = float(e)
            known[atomic_numbers[el]] = True
        self.register_buffer("self_energy_ev", sae)
        self.register_buffer("known", known)
        self.member = int(member)
        self.hartree_ev = float(HARTREE_EV)

    @torch.jit.export
    def member_energies(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if positions.dim() == 2:
            positions = positions.unsqueeze(0)
        if not bool(self.known[numbers].all()):
            raise RuntimeError("the structure has an element this potential was not trained on")
        z = numbers.unsqueeze(0).expand(positions.shape[0], numbers.shape[0]).contiguous()
        elem = self.species_converter(z)
        aev = self.aev_computer(elem, positions)
        e = self.neural_networks(elem, aev, ensemble_values=True)  # (K, B) Hartree
        return e * self.hartree_ev + self.self_energy_ev[numbers].sum()

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        e = self.member_energies(numbers, positions)
        if self.member < 0:
            return e.mean(dim=0)
        return e[self.member]

    @torch.jit.export
    def energy_forces(self, numbers: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = positions.detach().clone()
        if x.dim() == 2:
            x = x.unsqueeze(0)
        x.requires_grad_(True)
        e = self.forward(numbers, x)
        g = torch.autograd.grad([e.sum()], [x])[0]
        if g is None:
            raise RuntimeError("no gradient")
        return e.detach(), -g


def export_potential(model, out_path, member: int = -1, extra: dict | None = None) -> Path:
    """Compile an ANI committee to TorchScript in double precision, written atomically.

    The file loads with ``torch.jit.load(path)`` alone (no rarelearn, no TorchANI) and gives::

        module(numbers, positions)              # (B,) eV: member `member`, or the mean if < 0
        module.member_energies(numbers, positions)  # (K, B) eV
        module.energy_forces(numbers, positions)    # ((B,) eV, (B, N, 3) eV/Å)

    with ``numbers`` (N,) int64 atomic numbers and ``positions`` (N, 3) or (B, N, 3)
    float64 Å. ``extra`` (JSON) is stored as the extra file ``rarelearn_potential.json``.

    Raises ModelError for a SchNet committee (its TorchScript export is not available).
    """
    from .model import EnsembleModel

    if not isinstance(model, EnsembleModel):
        raise ModelError(f"TorchScript export covers ANI committees, not {type(model).__name__}")
    ani = copy.deepcopy(model.module).cpu().double()
    for p in ani.parameters():
        p.requires_grad_(False)
    scripted = torch.jit.script(_ScriptedPotential(ani, model.spec["self_energies"], member).eval())
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = {"spec": model.spec, "member": member, "units": "eV, angstrom, eV/angstrom", "dtype": "float64",
            **(extra or {})}
    with atomic_path(out_path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"rarelearn_potential.json": json.dumps(info)})
    return out_path


# ---------------------------------------------------------------------- the card
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


def build_card(*, choice: dict, evaluation: dict, model, best_member: int, member, frames: Frames,
               trained: dict, labeller_cfg: dict, smd_cfg: dict | None, molecule, pulled: Sequence[int],
               uq: dict, final_uq: dict, reference: dict | None = None, files: dict | None = None,
               source_files: dict | None = None) -> dict:
    """The model card as a JSON-ready dict (see :func:`build_potential` for the inputs)."""
    from . import __version__

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
        "unseen_frames": ev.get("unseen_frames"),
        "unseen_energy_mae_eV": _num(ev.get("unseen_energy_mae")),
        "unseen_force_mae_eV_per_A": _num(ev.get("unseen_force_mae")),
        "cogef_frames_energy_mae_eV": _num(ev.get("cogef_frames_energy_mae")),
        "measured_with": f"member {best_member} (the best member) drove the SMD pulls and the COGEF scan; "
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


def _card_rows(card: dict) -> list[tuple[str, str]]:
    err, unc, tr, it, ds = card["errors"], card["uncertainty"], card["trained_range"], card["iteration"], card["dataset"]
    smd = (f"{_fmt(err['smd_delta_ea_kcal'], '+.2f')} ± {_fmt(err['smd_delta_ea_stderr_kcal'])} kcal/mol "
           f"({err['smd_replicas_with_barrier']} replicas with a barrier)")
    if err.get("no_barrier_reason"):
        smd += f"; {err['no_barrier_reason']}"
    bonds = ", ".join(f"{k} {v['min']:.2f}–{v['max']:.2f} Å" for k, v in tr["bond_lengths"].items())
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
        ("Barrier error, COGEF (ΔE_max)", f"{_fmt(err['cogef_delta_e_max_kcal'], '+.2f')} kcal/mol"),
        ("MAE on unseen frames", f"energy {_fmt(err['unseen_energy_mae_eV'], '.4f')} eV, forces "
                                 f"{_fmt(err['unseen_force_mae_eV_per_A'], '.4f')} eV/Å "
                                 f"({err['unseen_frames']} reference SMD frames)"),
        ("UQ threshold at the end", f"{_fmt(unc['uq_threshold_eV'], '.4f')} eV (iteration "
                                    f"{unc['uq_threshold_iteration']}, mean over replicas)"),
        ("Trained energies", f"{tr['energy']['min']:.3f} to {tr['energy']['max']:.3f} eV "
                             f"(span {tr['energy_above_min']:.3f} eV)"),
        ("Trained bond lengths", bonds),
    ]
    if "pulled_distance" in tr:
        rows.append(("Trained pulled distance", f"{tr['pulled_distance']['min']:.2f}–"
                                                f"{tr['pulled_distance']['max']:.2f} Å"))
    rows.append(("Warns above", f"energy spread {_fmt(unc['warn_energy_std_above_eV'], '.4f')} eV or force spread "
                                f"{_fmt(unc['warn_force_std_above_eV_per_A'], '.4f')} eV/Å (largest on the training set)"))
    for name, f in card["files"].items():
        rows.append((f"SHA-256 {name}", f"{f['sha256']}"))
    return rows


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def card_markdown(card: dict) -> str:
    """The card as a short Markdown page (``card.md``)."""
    lines = ["# The potential: model card", "",
             f"{_sentence(card['errors']['measured_with'])}. Made {card['created']} by rarelearn "
             f"{card['rarelearn_version']}; every figure is in `card.json`.", "",
             "| | |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', chr(92) + '|')} |" for k, v in _card_rows(card)]
    lines += ["", "Use it: `rarelearn.load_potential(\"results/potential\")` (ASE calculator), "
                  "`torch.jit.load(\"results/potential/potential.ts\")` (no rarelearn needed), or "
                  "`python -m rarelearn.run smd --potential results/potential --structure my.xyz --pull I J`.", ""]
    return "\n".join(lines)


def card_rst(card: dict) -> str:
    """The card as reStructuredText (``card.rst``, the opening of the HTML report)."""
    rows = _card_rows(card)
    out = ["The potential: model card", "==========================", "",
           f"{_sentence(card['errors']['measured_with'])}. Every figure is in ``results/potential/card.json``.", "",
           ".. list-table::", "   :widths: 25 75", ""]
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


def build_potential(evaluation_paths: Sequence, stop: dict | None, ensemble, best_json, data, uq, final_uq,
                    molecule_xyz, labeller_cfg: dict, out_dir, smd_cfg: dict | None = None,
                    reference_barrier=None, reference_cogef=None) -> dict:
    """Write ``results/potential/`` (:data:`POTENTIAL_FILES`): the chosen committee, its
    TorchScript export (ANI), and the model card.

    Parameters
    ----------
    evaluation_paths : the campaign's evaluation.json files, in iteration order
    stop : the ``campaign.stop`` section (the choice follows :func:`choose_iteration`)
    ensemble, best_json, data, uq : the chosen iteration's committee, best member, training
        set and UQ file (as :func:`potential_sources` names them)
    final_uq : the last iteration's UQ file (the threshold the campaign ended with)
    molecule_xyz : the prepared molecule (pulled groups in its info)
    labeller_cfg, smd_cfg : the config's ``labeller`` and ``smd`` sections
    out_dir : output folder
    reference_barrier, reference_cogef : the reference's barrier.json and cogef.json (optional)

    Returns
    -------
    the card (dict)
    """
    from .schnet import load_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    evaluations = [read_json(p) for p in evaluation_paths]
    choice = choose_iteration(evaluations, stop)
    chosen = next(ev for ev in evaluations if int(ev["iteration"]) == choice["iteration"])
    model = load_model(ensemble)
    best = int(read_json(best_json)["best_member"])
    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    model.check_elements(atoms.numbers)
    frames = read_frames(data)
    trained = trained_range(model.to(dtype=torch.float64), frames, reference_positions=atoms.positions,
                            pulled=(g1[0], g2[0]))
    # the files
    ens_out = out_dir / "ensemble.pt"
    with atomic_path(ens_out) as tmp:
        shutil.copyfile(ensemble, tmp)
    ts_out = out_dir / "potential.ts"
    files = {"ensemble.pt": {"sha256": _sha256(ens_out), "bytes": ens_out.stat().st_size}}
    try:
        export_potential(model, ts_out, member=best, extra={"iteration": choice["iteration"]})
        files["potential.ts"] = {"sha256": _sha256(ts_out), "bytes": ts_out.stat().st_size}
    except ModelError as exc:  # SchNet: no TorchScript; say so on the card
        ts_out.unlink(missing_ok=True)
        _write_text(ts_out, f"no TorchScript export: {exc}\n")
    reference = {}
    if reference_barrier is not None:
        rb = read_json(reference_barrier)
        reference["smd_ea_eV"] = _num(rb.get("ea_mean"))
        reference["smd_ea_stderr_eV"] = _num(rb.get("ea_stderr"))
        reference["smd_replicas"] = rb.get("n_replicas")
    if reference_cogef is not None:
        rc = read_json(reference_cogef)
        reference["cogef_e_max_eV"] = _num(rc.get("e_max"))
        reference["cogef_broken_bond"] = rc.get("broken_label")
    card = build_card(choice=choice, evaluation=chosen, model=model, best_member=best, member=best, frames=frames,
                      trained=trained, labeller_cfg=labeller_cfg, smd_cfg=smd_cfg, molecule=atoms,
                      pulled=(g1[0], g2[0]), uq=_uq_thresholds(uq), final_uq=_uq_thresholds(final_uq),
                      reference=reference, files=files,
                      source_files={"ensemble": str(ensemble), "data": str(data), "evaluation": [str(p) for p in evaluation_paths]})
    card["model"]["groups"] = {"group1": [int(x) for x in g1], "group2": [int(x) for x in g2]}
    _write_text(out_dir / "card.md", card_markdown(card))
    _write_text(out_dir / "card.rst", card_rst(card))
    write_json(out_dir / "card.json", card)
    log.info("potential: iteration %d (%s: %s), member %d, %d training frames; %s", choice["iteration"],
             choice["rule"], choice["reason"], best, len(frames), ", ".join(f"{k} {v['sha256'][:12]}"
                                                                            for k, v in files.items()))
    return card


# ---------------------------------------------------------------------- ASE
class PotentialCalculator(Calculator):
    """The potential as an ASE calculator, with the committee's spread in its results.

    Results
    -------
    energy, free_energy : float, eV (member ``member``, or the committee mean)
    forces : (N, 3) eV/Å
    energies : (K,) member energies, eV
    member_forces : (K, N, 3) eV/Å
    energy_std : float, eV (ddof 0 over the members)
    forces_std : (N,) eV/Å, per atom ``sqrt(mean_k |F_k,i − mean_k F_k,i|²)``
    force_std : float, eV/Å, the largest of ``forces_std``
    outside_trained_range : bool, energy_std or force_std above the card's bounds

    Attributes
    ----------
    frames_outside : how many calculations so far were outside the trained range
    card : the model card (dict) or None

    Parameters
    ----------
    model : committee of either family (or a model file)
    member : int, None (the committee mean), or the card's best member when built by
        :func:`load_potential`
    bounds : (energy_std eV, force_std eV/Å) above which a frame is outside the trained
        range (None: no check)
    warn : warn once (:class:`OutsideTrainedRange`) at the first frame outside the range
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies", "member_forces", "energy_std",
                              "forces_std", "force_std", "outside_trained_range"]
    default_parameters: dict = {}

    def __init__(self, model, member: int | None = None, bounds: tuple[float, float] | None = None,
                 warn: bool = True, card: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        from .schnet import make_calculator

        self.inner = make_calculator(model, member=member)
        self.model = self.inner.model
        self.member = member
        self.bounds = bounds
        self.warn = warn
        self.card = card
        self.frames_outside = 0
        self._warned = False

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        inner = self.inner
        inner.results = {}
        inner.calculate(self.atoms, ["energy", "forces", "member_forces"], all_changes)
        res = dict(inner.results)
        fm = res["member_forces"]
        dev = fm - fm.mean(axis=0, keepdims=True)
        per_atom = np.sqrt((dev ** 2).sum(axis=-1).mean(axis=0))
        res["forces_std"] = per_atom
        res["force_std"] = float(per_atom.max()) if per_atom.size else 0.0
        outside = False
        if self.bounds is not None:
            e_max, f_max = self.bounds
            outside = bool((e_max is not None and res["energy_std"] > e_max)
                           or (f_max is not None and res["force_std"] > f_max))
        res["outside_trained_range"] = outside
        if outside:
            self.frames_outside += 1
            if self.warn and not self._warned:
                self._warned = True
                warnings.warn(OutsideTrainedRange(
                    f"the committee's spread (energy {res['energy_std']:.4f} eV, force {res['force_std']:.4f} eV/Å) "
                    f"is larger than on any training frame (energy {self.bounds[0]:.4f} eV, force "
                    f"{self.bounds[1]:.4f} eV/Å): this structure is outside the trained range, treat its "
                    f"energy and forces with care (warned once; see calc.frames_outside)"), stacklevel=2)
        self.results = res


def load_potential(path="results/potential", member: int | str | None = "best", device=None,
                   dtype: torch.dtype = torch.float64, warn: bool = True, check_hash: bool = True
                   ) -> PotentialCalculator:
    """The potential of a finished campaign as an ASE calculator.

    Parameters
    ----------
    path : the potential folder (``results/potential``) holding ``card.json`` and ``ensemble.pt``
    member : "best" (the card's best member, the one the barrier errors were measured with),
        "mean" or None (the committee mean), or a member index
    device : torch device (default CPU)
    dtype : torch.float64 (default: matches ``potential.ts`` to 1e-6 eV) or torch.float32
    warn : warn once when a frame leaves the trained range (the card's spread bounds)
    check_hash : refuse an ``ensemble.pt`` whose SHA-256 is not the card's

    Returns
    -------
    :class:`PotentialCalculator`
    """
    from .schnet import load_model

    path = Path(path)
    card = read_card(path)
    ens_path = path / "ensemble.pt"
    if check_hash:
        want = card["files"]["ensemble.pt"]["sha256"]
        if not ens_path.exists() or _sha256(ens_path) != want:
            raise ModelError(f"{ens_path}: missing, or not the file the card describes (SHA-256 differs)")
    model = load_model(ens_path, device=device).to(dtype=dtype)
    if member == "best":
        member = int(card["model"]["best_member"])
    elif member == "mean":
        member = None
    unc = card["uncertainty"]
    bounds = (unc.get("warn_energy_std_above_eV"), unc.get("warn_force_std_above_eV_per_A"))
    return PotentialCalculator(model, member=member, bounds=bounds, warn=warn, card=card)
