"""The campaign's figures (the paper's Figs. 3, 5, 6 and SI Fig. S1, for the user's own run).

Every function reads the workflow's files and writes one PNG. Energies are shown in
eV or kcal/mol as labelled on the axes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from ..dataset import read_frames  # noqa: E402
from ..atomic import atomic_path
from ..jsonio import read_json  # noqa: E402
from ..units import KCAL_MOL_PER_EV  # noqa: E402

__all__ = [
    "plot_work_curves",
    "plot_barrier_error",
    "plot_mae",
    "plot_parity",
    "plot_uq",
    "plot_label_efficiency",
    "plot_cogef_profiles",
    "plot_ea_distributions",
    "make_figures",
    "plot_family",
    "plot_baselines",
    "plot_study",
]


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _curve(frames):
    """(spring distance, work) of an SMD replica; empty arrays for a run that stopped before the pull."""
    from ..chem.barrier import pull_began

    if not pull_began(frames) or "work" not in frames.extras:
        return np.zeros(0), np.zeros(0)
    return frames.extras["spring_distance"], frames.extras["work"]


def _plot_replica(ax, path, color, lw, label) -> None:
    """One replica's work curve, with a cross where it broke (the barrier is read before it)."""
    from ..chem.barrier import read_replica

    fr = read_frames(path)
    d, w = _curve(fr)
    ax.plot(d, w, color=color, lw=lw, alpha=0.75, label=label)
    if len(fr):
        b = read_replica(fr)["break_frame"]
        if b is not None:
            ax.plot(d[b], w[b], "x", color=color, ms=7, mew=2)


def plot_work_curves(reference_replicas: Sequence, iteration_replicas: dict, out) -> Path:
    """Work W(spring distance) of every iteration's replicas over the reference (Fig. 3a);
    crosses mark the breaks: work gained after a cross is the fragments' attraction."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for k, p in enumerate(reference_replicas):
        _plot_replica(ax, p, "black", 2.0, "reference" if k == 0 else None)
    iters = sorted(iteration_replicas)
    cmap = plt.get_cmap("viridis", max(len(iters), 2))
    for j, i in enumerate(iters):
        for k, p in enumerate(iteration_replicas[i]):
            _plot_replica(ax, p, cmap(j), 1.0, f"iteration {i}" if k == 0 else None)
    ax.set_xlabel("spring distance (Å)")
    ax.set_ylabel("work W (eV)")
    ax.set_title("SMD work curves (× = break; E_a is max W before it)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out)


def _cogef_errors(summary, col: str = "cogef_abs_delta_e_max_kcal"):
    return summary[col] if col in summary and np.isfinite(summary[col].astype(float)).any() else None



def _barrier_errors(summary, x: str, smd_label: str, target_kcal: float, target_label: str | None):
    """A figure of |ΔE_a| (with its standard error) and COGEF |ΔE_max| against column ``x``,
    log scale, with the target line; returns (figure, axes)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.errorbar(summary[x], summary["abs_delta_ea_kcal"], yerr=summary["delta_ea_stderr_kcal"],
                marker="o", capsize=3, label=smd_label)
    cogef = _cogef_errors(summary)
    if cogef is not None:
        ax.plot(summary[x], cogef, "s--", label="COGEF |ΔE_max|")
    worst = _cogef_errors(summary, "cogef_members_worst_abs_delta_kcal")
    if worst is not None:  # missing where a member did not break within the scan
        ax.plot(summary[x], worst, "^:", label="COGEF |ΔE_max|, worst member")
    if "smd_same_bond_fraction" in summary:   # the pulls mostly broke another bond than the reference's
        other = summary["smd_same_bond_fraction"].astype(float) < 0.5
        if other.any():
            ax.plot(summary[x][other], summary["abs_delta_ea_kcal"][other], "x", color="black", ms=11, mew=2,
                    label="SMD pulls break another bond", zorder=5)
    ax.axhline(target_kcal, color="red", ls="--", label=target_label)
    ax.set_yscale("log")
    return fig, ax


def plot_barrier_error(summary, out, target_kcal: float = 1.0) -> Path:
    """|ΔE_a| (SMD, read up to the break) per iteration with its standard error, COGEF
    |ΔE_max|, and the target line (Fig. 3b, 5)."""
    fig, ax = _barrier_errors(summary, "iteration", "SMD |ΔE_a| to the break ± SE", target_kcal,
                              f"{target_kcal:g} kcal/mol")
    ax.set_xlabel("iteration")
    ax.set_ylabel("|ΔE_a| (kcal/mol)")
    ax.set_title("Barrier error against the reference")
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_family(summary, held_out: Sequence[str], out, target_kcal: float = 1.0) -> Path:
    """A family campaign on one page (``results/figures/family.png``, from the family's
    ``results/summary.csv``): per molecule and iteration, the best member's COGEF |ΔE_max|,
    the SMD |ΔE_a| read up to the break (± SE) and the energy MAE on unseen reference
    frames; the campaign's labels. Held-out molecules dashed; × where the potential
    breaks another bond than the reference's (COGEF profile, or most SMD pulls)."""
    import pandas as pd

    summary = pd.read_csv(summary) if isinstance(summary, (str, Path)) else summary
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [
        (axes[0, 0], "cogef_abs_delta_e_max_kcal", None, "COGEF |ΔE_max| (kcal/mol)", "cogef_same_bond"),
        (axes[0, 1], "abs_delta_ea_kcal", "delta_ea_stderr_kcal", "SMD |ΔE_a| to the break ± SE (kcal/mol)",
         "smd_same_bond_fraction"),
        (axes[1, 0], "unseen_energy_mae", None, "energy MAE, unseen reference frames (eV)", None),
    ]
    for i, (name, rows) in enumerate(summary.groupby("molecule", sort=False)):
        style = dict(color=f"C{i % 10}", ls="--" if name in held_out else "-", marker="o", ms=4,
                     label=f"{name} (held out)" if name in held_out else name)
        for ax, col, err, _, bond in panels:
            if col not in rows:
                continue
            y = rows[col].astype(float)
            ax.errorbar(rows["iteration"], y, yerr=None if err is None else rows[err].astype(float), capsize=2,
                        **style)
            if bond is not None and bond in rows:
                b = rows[bond]
                other = (b.astype(float) < 0.5) if bond == "smd_same_bond_fraction" else (
                    b.astype(str).str.lower() == "false")
                if other.any():
                    ax.plot(rows["iteration"][other], y[other], "x", color="black", ms=9, mew=2, zorder=5)
    for ax, _, _, label, bond in panels:
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(label, fontsize=9)
        if bond is not None:
            ax.axhline(target_kcal, color="red", ls=":", lw=1)
    axes[0, 0].plot([], [], "x", color="black", ms=9, mew=2, label="another bond breaks")
    axes[0, 0].legend(fontsize=7)
    labels = summary.groupby("iteration")["labels_total"].sum() if "labels_total" in summary else None
    ax = axes[1, 1]
    if labels is not None:
        bottom = np.zeros(len(labels))
        for i, (name, rows) in enumerate(summary.groupby("molecule", sort=False)):
            if name in held_out:
                continue
            per = rows.set_index("iteration")["labels_total"].reindex(labels.index).fillna(0).to_numpy()
            ax.bar(labels.index, per, bottom=bottom, color=f"C{i % 10}", label=name)
            bottom += per
        ax.legend(fontsize=7)
    ax.set_xlabel("iteration")
    ax.set_ylabel("labels in the data set (all molecules)", fontsize=9)
    for a in axes.flat:
        a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle("One committee for every molecule: its errors against the reference")
    return _save(fig, out)


def plot_mae(summary, out) -> Path:
    """Train/validation energy MAE and the MAE on unseen reference SMD frames (Fig. 3c, 3d)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    k = KCAL_MOL_PER_EV
    ax.plot(summary["iteration"], summary["mean_train_energy_mae"] * k, "o-", label="train (mean of members)")
    ax.plot(summary["iteration"], summary["mean_val_energy_mae"] * k, "s-", label="validation")
    ax.plot(summary["iteration"], summary["unseen_energy_mae"] * k, "^-", label="unseen reference SMD")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("energy MAE (kcal/mol)")
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_parity(prediction_files: dict, out) -> Path:
    """NNP vs reference energies on the unseen frames, first vs last iteration (Fig. 6)."""
    iters = sorted(prediction_files)
    chosen = [iters[0]] + ([iters[-1]] if len(iters) > 1 else [])
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), 4.0), squeeze=False)
    for ax, i in zip(axes[0], chosen):
        pred = read_json(prediction_files[i])
        ref = np.asarray(pred["reference_energy"])
        nnp = np.asarray(pred["predicted_energy"])
        e0 = ref.min()
        ax.scatter(ref - e0, nnp - e0, s=3, alpha=0.5)
        lim = [min((ref - e0).min(), (nnp - e0).min()), max((ref - e0).max(), (nnp - e0).max())]
        ax.plot(lim, lim, "k--", lw=1)
        mae = np.abs(nnp - ref).mean() * KCAL_MOL_PER_EV
        ax.set_title(f"iteration {i}: MAE {mae:.2f} kcal/mol")
        ax.set_xlabel("reference energy (eV, shifted)")
        ax.set_ylabel("potential energy (eV, shifted)")
    return _save(fig, out)


def plot_uq(uq_files: dict, selection_files: dict, replica_files: dict, out) -> Path:
    """σ of the ensemble along each iteration's first SMD replica, with the μ+3σ threshold and
    the frames selected (SI Fig. S1)."""
    import h5py

    iters = sorted(uq_files)
    if not iters:  # a molecule held out of training: nothing was scored for selection
        fig, ax = plt.subplots(figsize=(6.4, 2.2))
        ax.text(0.5, 0.5, "held out of training: no frames scored or selected", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, out)
    fig, axes = plt.subplots(len(iters), 1, figsize=(6.4, 2.2 * len(iters)), squeeze=False, sharex=True)
    for ax, i in zip(axes[:, 0], iters):
        first = Path(replica_files[i][0]).stem
        fr = read_frames(replica_files[i][0])
        if len(fr) == 0:
            ax.set_title(f"iteration {i}: replica {first} stopped before the pull ({fr.attrs.get('stop_reason')})",
                         fontsize=8)
            continue
        with h5py.File(uq_files[i], "r") as h5:
            s = h5[first]["sigma"][()]
            thr = float(h5[first].attrs["threshold"])
        sel = read_json(selection_files[i])
        # sampler hal selects from its own runs, not from the SMD replicas: no indices here
        idx = next((r.get("indices", []) for r in sel.get("replicas", []) if r["replica"] == first), [])
        d = fr.extras["spring_distance"]
        ax.plot(d, s, lw=0.8, label="σ")
        ax.axhline(thr, color="red", ls="--", lw=1, label="μ+3σ")
        if idx:
            ax.plot(d[idx], s[idx], "o", ms=3, color="orange", label="selected")
        ax.set_ylabel("σ (eV)")
        biased = Path(replica_files[i][0]).parent.name == "smd_hal"
        if fr.attrs.get("phase") == "relaxation":  # every frame was a candidate (select_replica)
            ax.set_title(f"iteration {i}: replica {first} {fr.attrs.get('stop_reason')}; its relaxation's "
                         f"frames, all candidates", fontsize=8)
        else:
            ax.set_title(f"iteration {i}" + (" (HAL-biased pull)" if biased else ""), fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("spring distance (Å)")
    return _save(fig, out)


def plot_label_efficiency(summary, out, target_kcal: float = 1.0) -> Path:
    """Reference labels spent vs |ΔE_a| (and COGEF |ΔE_max|): the label-efficiency curve."""
    fig, ax = _barrier_errors(summary, "labels_total", "SMD |ΔE_a|", target_kcal, None)
    ax.set_xlabel("reference labels spent")
    ax.set_ylabel("barrier error (kcal/mol)")
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_cogef_profiles(reference_json, iteration_jsons: dict, out) -> Path:
    """COGEF energy profiles E(Δ) of the reference and every iteration's potential, with each
    maximum marked (the profile past the break: flat for free fragments)."""
    fig, (ax, axf) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    curves = [("reference", reference_json, "black", 2.0)]
    cmap = plt.get_cmap("viridis", max(len(iteration_jsons), 2))
    curves += [(f"iteration {i}", p, cmap(j), 1.2) for j, (i, p) in enumerate(sorted(iteration_jsons.items()))]
    for name, path, color, lw in curves:
        c = read_json(path)
        x, e, f = (np.asarray(c[k], float) for k in ("extension", "energy", "force"))
        tag = f"{name}: E_max {c['e_max']:.2f} eV" + ("" if c["broke"] else " (no break)")
        ax.plot(x, e, color=color, lw=lw, label=tag)
        ax.plot(c["extension_at_max"], c["e_max"], "o", color=color)
        axf.plot(x, f, color=color, lw=lw, label=name)
    ax.set_xlabel("extension Δ of the pulled atoms (Å)")
    ax.set_ylabel("relaxed energy E(Δ) (eV)")
    ax.set_title("COGEF profiles")
    ax.legend(fontsize=7)
    axf.set_xlabel("extension Δ (Å)")
    axf.set_ylabel("constraint force dE/dΔ (eV/Å)")
    axf.set_title("COGEF force")
    return _save(fig, out)


def plot_ea_distributions(reference_json, evaluation_jsons: dict, out) -> Path:
    """Every replica's E_a (read up to the break): the reference against each iteration,
    coloured by the bond that broke; the number of unbroken replicas under each column, and
    how many reference replicas ran in how many rounds (an adaptive reference)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ref = read_json(reference_json)
    rounds = (ref.get("rounds") or {}).get("count")
    cols = [("ref" + (f" ({ref['replicas_run']} run, {rounds} round{'s' if rounds != 1 else ''})"
                      if ref.get("replicas_run") is not None and rounds else ""), ref)]
    for i, p in sorted(evaluation_jsons.items()):
        ev = read_json(p)
        cols.append((str(i), {"replica_records": ev.get("nnp_replica_records", []),
                              "unbroken": ev.get("nnp_unbroken", 0),
                              "failed_replicas": ev.get("nnp_failed_replicas", [])}))
    labels = sorted({r["broken_label"] for _, c in cols for r in c.get("replica_records", []) if r.get("broke")})
    cmap = plt.get_cmap("tab10")
    colors = {lab: cmap(k % 10) for k, lab in enumerate(labels)}
    rng = np.random.default_rng(0)
    ticks = []
    for x, (name, c) in enumerate(cols):
        recs = [r for r in c.get("replica_records", []) if r.get("broke") and np.isfinite(r.get("ea", np.nan))]
        for r in recs:
            ax.plot(x + rng.uniform(-0.15, 0.15), r["ea"], "o", color=colors[r["broken_label"]], alpha=0.8)
        if recs:
            ax.hlines(np.mean([r["ea"] for r in recs]), x - 0.3, x + 0.3, color="black")
        ticks.append(f"{name}\n{c.get('unbroken', 0)} unbroken" + (f", {len(c['failed_replicas'])} failed"
                                                                    if c.get("failed_replicas") else ""))
    for lab, color in colors.items():
        ax.plot([], [], "o", color=color, label=lab)
    ax.set_xticks(range(len(cols)), ticks, fontsize=7)
    ax.set_ylabel("E_a = max W before the break (eV)")
    ax.set_title("E_a of every SMD replica (bar: mean)")
    if colors:
        ax.legend(fontsize=7, title="bond broken")
    return _save(fig, out)


def plot_baselines(reference_replicas: Sequence, baseline_replicas: dict, table, out) -> Path:
    """Work curves of each baseline's SMD over the reference's, one panel per baseline
    (Fig. 2c: trained on equilibrium MD only; Fig. 2d: trained on the reference SMD frames).
    ``table``: the baselines table (``studies.baselines_step``) for the E_a in each title."""
    names = list(baseline_replicas)
    titles = {"equilibrium": "trained on equilibrium MD only", "smd_frames": "trained on reference SMD frames"}
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.2), squeeze=False, sharey=True)
    ref_curves = [_curve(read_frames(p)) for p in reference_replicas]
    for ax, name in zip(axes[0], names):
        for k, (d, w) in enumerate(ref_curves):
            ax.plot(d, w, color="black", lw=2.0, alpha=0.8, label="reference" if k == 0 else None)
        for k, p in enumerate(baseline_replicas[name]):
            d, w = _curve(read_frames(p))
            ax.plot(d, w, color="tab:red", lw=1.0, alpha=0.8, label="potential" if k == 0 else None)
        row = table[table["baseline"] == name].iloc[0]
        ax.set_title(f"{titles.get(name, name)}\nE_a {row.potential_ea_mean:.2f} ± {row.potential_ea_stderr:.2f} eV "
                     f"vs {row.labeller_ea_mean:.2f} ± {row.labeller_ea_stderr:.2f} eV; "
                     f"ΔE_a {row.delta_ea_kcal:+.1f} ± {row.delta_ea_stderr_kcal:.1f} kcal/mol", fontsize=8)
        ax.set_xlabel("spring distance (Å)")
        ax.legend(fontsize=8, loc="upper left")
    axes[0, 0].set_ylabel("work W (eV)")
    return _save(fig, out)


def plot_study(table, key: str, out, xlabel: str, title: str = "", logx: bool = False, mark=None,
               target_kcal: float = 1.0) -> Path:
    """A study's E_a of labeller and potential per case (top, eV) and ΔE_a ± standard error
    (bottom, kcal/mol, with ±``target_kcal`` shaded; no error bar where a side has a single
    replica, ``delta_stderr_defined``); ``mark``: the campaign's own case
    (alkane trained on, protocol speed), drawn as a dotted line."""
    x = np.asarray(table[key], dtype=float)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(5.8, 6.0), sharex=True)
    ax1.errorbar(x, table["labeller_ea_mean"], yerr=table["labeller_ea_stderr"], marker="o", color="black",
                 capsize=3, label="labeller")
    ax1.errorbar(x, table["potential_ea_mean"], yerr=table["potential_ea_stderr"], marker="s", color="tab:red",
                 capsize=3, label="potential")
    ax1.set_ylabel("E_a = max W (eV)")
    ax1.legend(fontsize=8)
    ax1.set_title(title, fontsize=9)
    ax2.axhspan(-target_kcal, target_kcal, color="tab:green", alpha=0.2, label=f"±{target_kcal:g} kcal/mol")
    ax2.axhline(0.0, color="grey", lw=0.8)
    defined = np.asarray(table["delta_stderr_defined"], dtype=bool)
    yerr = np.where(defined, np.asarray(table["delta_ea_stderr_kcal"], dtype=float), np.nan)
    ax2.errorbar(x, table["delta_ea_kcal"], yerr=yerr, marker="o", capsize=3, color="tab:blue",
                 label="ΔE_a ± standard error" if defined.all() else "ΔE_a (no error bar: one replica a side)")
    ax2.set_ylabel("ΔE_a potential − labeller (kcal/mol)")
    ax2.set_xlabel(xlabel)
    for ax in (ax1, ax2):
        if mark is not None:
            ax.axvline(float(mark), color="grey", ls=":", lw=1)
        if logx:
            ax.set_xscale("log")
    ax2.set_xticks(x)
    if logx:
        from matplotlib.ticker import NullFormatter

        ax2.set_xticklabels([f"{v:g}" for v in x])
        ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.legend(fontsize=8)
    return _save(fig, out)


def _scored_pulls(uq_h5) -> str:
    """Which pulls an iteration's UQ scored: ``smd`` (the best member's) or ``smd_hal``."""
    import h5py

    with h5py.File(uq_h5, "r") as h5:
        return str(h5.attrs.get("pulls", "smd"))


def make_figures(summary_csv, reference_replicas: Sequence, iteration_dirs: Sequence, out_dir,
                 reference_barrier_json=None, reference_cogef_json=None) -> list[Path]:
    """Every figure of the campaign into ``out_dir``; returns the paths. The E_a distribution
    and COGEF figures need the reference's ``barrier.json`` and ``cogef.json``."""
    import pandas as pd

    summary = pd.read_csv(summary_csv)
    out_dir = Path(out_dir)
    # an iteration's folder: results/iter_NNN, or results/iter_NNN/molecules/NAME in a family
    its = {next(int(p[len("iter_"):]) for p in Path(d).parts if p.startswith("iter_")): Path(d)
           for d in iteration_dirs}
    replicas = {i: sorted((d / "smd").glob("replica_*.h5")) for i, d in its.items()}
    # a molecule held out of training (a family's weight 0) has no UQ nor selection
    learnt = {i: d for i, d in its.items() if (d / "uq.h5").exists()}
    scored = {i: sorted((d / _scored_pulls(d / "uq.h5")).glob("replica_*.h5")) for i, d in learnt.items()}
    return [
        plot_work_curves(reference_replicas, replicas, out_dir / "work_curves.png"),
        plot_barrier_error(summary, out_dir / "barrier_error.png"),
        plot_mae(summary, out_dir / "mae.png"),
        plot_parity({i: d / "unseen_predictions.json" for i, d in its.items()}, out_dir / "parity.png"),
        plot_uq({i: d / "uq.h5" for i, d in learnt.items()},
                {i: d / "selected" / "selection.json" for i, d in learnt.items()}, scored, out_dir / "uq.png"),
        plot_label_efficiency(summary, out_dir / "label_efficiency.png"),
    ] + ([plot_ea_distributions(reference_barrier_json, {i: d / "evaluation.json" for i, d in its.items()},
                                out_dir / "ea_distributions.png")] if reference_barrier_json else []) + (
        [plot_cogef_profiles(reference_cogef_json, {i: d / "cogef.json" for i, d in its.items()},
                             out_dir / "cogef_profiles.png")] if reference_cogef_json else [])
