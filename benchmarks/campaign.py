"""Run (or read) a campaign and print, per iteration, both barrier observables against the
reference: COGEF |ΔE_max| (deterministic) and SMD |ΔE_a| read up to the break with its
standard error, the work the potential gains after the break (the reference's beside it),
labels spent so far and the iteration's summed job wall time; then the totals.

    python benchmarks/campaign.py --workdir /tmp/hexane                  # default config
    python benchmarks/campaign.py --workdir /tmp/hexane --config my.yaml
    python benchmarks/campaign.py --workdir /tmp/hexane --no-run         # only report (also while it runs)
    python benchmarks/campaign.py --workdir /tmp/family --config config/family.yaml   # a table per molecule

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rarelearn.units import KCAL_MOL_PER_EV

REPO = Path(__file__).resolve().parents[1]


def _members(rows, best=None) -> str:
    """Every member's COGEF ΔE_max (kcal/mol; x: no break; * the best member, ``best``),
    or '-' without them."""
    if not rows:
        return "-"
    return " ".join(("x" if not m["broke"] else f"{m['delta_e_max_kcal']:+.0f}") + ("*" if m.get("member", k) == best else "")
                    for k, m in enumerate(rows))


def _num(x, fmt: str) -> str:
    return "-" if x is None or x != x else format(x, fmt)


def print_table(df: "pd.DataFrame", wall: float | None = None, evaluations: dict | None = None) -> None:
    """Per iteration of a summary.csv: both barrier observables (and every member's COGEF
    ΔE_max, from ``evaluations``: iteration → evaluation.json record; what the best member's
    ΔE_max is made of, ``intact``: its loaded chain against the reference's at the
    reference's break, kcal/mol, and ``shift``: its break minus the reference's, Å, so that a
    small ΔE_max by cancellation shows; ``bond``: whether the SMD pulls break the reference's
    bond), post-break work,
    labels and job time; then the totals and the best iteration of each observable."""
    k = KCAL_MOL_PER_EV
    print(f"{'iter':>4} {'COGEF |dEmax|':>13} {'members dEmax':>16} {'intact':>6} {'shift A':>7} {'SMD |dEa|':>9} {'± SE':>5} {'bond':>4} {'unbroken':>8} "
          f"{'post-break W (ref) kcal/mol':>28} {'labels':>7} {'wall s':>7} {'unseen E MAE meV':>17}")
    for _, r in df.iterrows():
        post = f"{r.nnp_post_break_work_mean * k:.1f} ({r.ref_post_break_work_mean * k:.1f})"
        ev = (evaluations or {}).get(int(r.iteration), {})
        print(f"{int(r.iteration):>4} {r.cogef_abs_delta_e_max_kcal:>13.2f} "
              f"{_members(ev.get('cogef_members'), ev.get('best_member')):>16} "
              f"{_num(ev.get('cogef_intact_delta_kcal'), '+.1f'):>6} {_num(ev.get('cogef_break_shift'), '+.3f'):>7} "
              f"{r.abs_delta_ea_kcal:>9.2f} "
              f"{r.delta_ea_stderr_kcal:>5.2f} {_same_bond(r):>4} {int(r.nnp_unbroken):>8} {post:>28} {int(r.labels_total):>7} "
              f"{r.wall_seconds:>7.0f} {1000 * r.unseen_energy_mae:>17.1f}")
    print(f"total: {len(df)} iterations, {int(df.labels_total.iloc[-1])} labels, "
          f"summed job time {df.wall_seconds.sum():.0f} s"
          + (f", campaign wall time {wall:.0f} s" if wall is not None else ""))
    for col, name in (("cogef_abs_delta_e_max_kcal", "COGEF |dEmax|"), ("abs_delta_ea_kcal", "SMD |dEa|")):
        if df[col].notna().any():
            print(f"best {name} = {df[col].min():.2f} kcal/mol at iteration {int(df.iteration[df[col].idxmin()])}")


def _same_bond(r) -> str:
    """``ok`` when the potential's pulls (most of them) break the reference's bond, ``x`` when
    not, ``?`` when unknown (no break, or a summary made before this was recorded)."""
    frac = r.get("smd_same_bond_fraction")
    if frac is None or frac != frac:
        return "?"
    return "ok" if frac >= 0.5 else "x"


def evaluations_of(results: Path, molecule: str = "") -> dict:
    """iteration → its evaluation.json record, for :func:`print_table` (``molecule``: a
    family molecule's folder, ``molecules/NAME/``)."""
    import json

    return {int(p.parts[-2 - molecule.count("/")][5:]): json.loads(p.read_text())
            for p in sorted(results.glob(f"iter_*/{molecule}evaluation.json"))}


def _table(results: Path) -> "pd.DataFrame | None":
    """``summary.csv``, or, while a campaign runs or after it was stopped (the summary is
    written at its end), the same rows made from the ``iter_*/evaluation.json`` files there
    are (one molecule; labels counted from the reference's MD set, as the summary does)."""
    if (results / "summary.csv").exists():
        return pd.read_csv(results / "summary.csv")
    import tempfile

    from rarelearn.dataset import read_frames
    from rarelearn.steps.evaluate import summary_step

    evaluations = sorted(results.glob("iter_*/evaluation.json"))
    if not evaluations:
        return None
    md = results / "reference" / "md.h5"
    with tempfile.TemporaryDirectory() as tmp:
        table = summary_step(evaluations, Path(tmp) / "summary.csv",
                             reference_md_frames=len(read_frames(md)) if md.exists() else 0)
    print(f"(no summary.csv yet: {len(evaluations)} iterations read from their evaluation.json)")
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--no-run", action="store_true")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    wall = None
    if not args.no_run:
        cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"),
               "--cores", str(args.cores), "--nocolor"]
        if args.config:
            cmd += ["--configfile", str(args.config.resolve())]
        t0 = time.time()
        with open(args.workdir / "campaign.log", "w") as log:
            rc = subprocess.call(cmd, cwd=args.workdir, stdout=log, stderr=subprocess.STDOUT)
        wall = time.time() - t0
        if rc:
            print(f"snakemake failed (exit {rc}); see {args.workdir / 'campaign.log'}")
            return rc
    results = args.workdir / "results"
    table = _table(results)
    if table is None:
        print(f"{results}: no summary.csv and no iteration evaluated yet")
        return 1
    if "molecule" not in table.columns:
        print_table(table, wall, evaluations_of(results))
        return 0
    # a family: one table per molecule (labels: that molecule's), then the campaign's labels
    for name, rows in table.groupby("molecule", sort=False):
        held_out = (results / "iter_000" / "molecules" / name / "merge.json").exists() is False
        print(f"\n{name}{' (held out: never trained on)' if held_out else ''}")
        print_table(rows.reset_index(drop=True), None, evaluations_of(results, f"molecules/{name}/"))
    last = table[table.iteration == table.iteration.max()]
    print(f"\nfamily: {table.molecule.nunique()} molecules, {int(last.campaign_labels_total.iloc[0])} labels in all"
          + (f", campaign wall time {wall:.0f} s" if wall is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
