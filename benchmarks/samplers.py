"""The hexane campaign with several samplers, same seeds and budget (issue 21): per sampler
and iteration, COGEF |ΔE_max|, SMD |ΔE_a| read up to the break ± SE, labels spent and job
time; then a figure of both errors against labels.

The reference stage and iteration 0's members, pulls, UQ and COGEF path do not depend on the
sampler: they are made once in ``WORKDIR/base`` and copied into ``WORKDIR/<sampler>``, where
the campaign goes on with ``--rerun-triggers mtime`` (the copies are not rebuilt).

    python benchmarks/samplers.py --workdir /tmp/samplers                       # smd cogef smd+cogef hal
    python benchmarks/samplers.py --workdir /tmp/samplers --samplers smd cogef --iterations 4
    python benchmarks/samplers.py --workdir /tmp/samplers --samplers cogef:all  # every member's path
    python benchmarks/samplers.py --workdir /tmp/samplers --no-run              # only report
    python benchmarks/samplers.py --workdir /tmp/sb --config config/branch.yaml --samplers smd+cogef smd

With ``--config`` an overlay such as config/branch.yaml is layered on config/config.yaml for
every arm; an arm whose kind does not compute the COGEF path runs with the overlay's COGEF-only
sampler options off (``COGEF_ONLY``), and ``cogef`` and ``hal`` without fragment frames.

A sampler is ``sampler.kind``, optionally ``:all`` for ``sampler.cogef_paths: all`` (the COGEF
paths of every member, not only the best's).

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign import REPO, evaluations_of, print_table  # noqa: E402

from rarelearn.config_checks import (COGEF_PATH_KINDS, COGEF_PATH_OPTIONS, DEPENDENT_OPTIONS,  # noqa: E402
                                     NO_SMD_FRAME_KINDS)

#: what iteration 0 makes before its selection: the same for every sampler
SHARED = ["results/reference/barrier.json", "results/reference/cogef.json", "results/iter_000/uq.h5",
          "results/iter_000/cogef.h5"]


def snakemake(workdir: Path, args: argparse.Namespace, targets=(), config=()) -> int:
    # targets first: --rerun-triggers, --configfile and --config each take a list of values
    cmd = [str(Path(sys.executable).with_name("snakemake")), *targets, "-s", str(REPO / "Snakefile"), "--cores",
           str(args.cores), "--nocolor", "--rerun-triggers", "mtime"]
    if args.config:
        cmd += ["--configfile", str(args.config.resolve())]
    if config:
        cmd += ["--config", *config]
    with open(workdir / "campaign.log", "a") as log:
        return subprocess.call(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)


#: sampler options that only a sampler computing the potential's COGEF path uses, and those that
#: act only with them (rarelearn.config_checks): off for the others, so that one overlay
#: (``--config config/branch.yaml``) serves every arm
COGEF_ONLY = {key: 0 for key, *_ in COGEF_PATH_OPTIONS + DEPENDENT_OPTIONS}


def arm_config(name: str, iterations: int | None) -> dict:
    """The ``--config`` layer of one arm: ``sampler.kind`` (``:all`` → ``cogef_paths: all``); for a
    kind without the COGEF path, the COGEF-only options off; for one without SMD frames, no fragment
    frames (config.py refuses both combinations)."""
    kind, _, paths = name.partition(":")
    config = {"sampler": {"kind": kind, **({"cogef_paths": paths} if paths else {})}}
    if kind not in COGEF_PATH_KINDS:
        config["sampler"].update(COGEF_ONLY)
    if kind in NO_SMD_FRAME_KINDS:
        config["selection"] = {"fragment_frames": 0}
    if iterations:
        config["campaign"] = {"max_iterations": iterations}
    return config


def workdir_of(root: Path, sampler: str) -> Path:
    """Where a sampler's campaign runs: ``smd+cogef`` → ``root/smd_cogef``, ``cogef:all`` → ``root/cogef_all``."""
    return root / sampler.replace("+", "_").replace(":", "_")


def figure(tables: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for name, df in tables.items():
        axes[0].plot(df.labels_total, df.cogef_abs_delta_e_max_kcal, "o-", label=name)
        axes[1].errorbar(df.labels_total, df.abs_delta_ea_kcal, yerr=df.delta_ea_stderr_kcal, fmt="o-",
                         capsize=3, label=name)
    for ax, title in zip(axes, ("COGEF |ΔE_max|", "SMD |ΔE_a| to the break ± SE")):
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("labels (MD set included)")
        ax.set_ylabel(f"{title} / kcal/mol")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--samplers", nargs="+", default=["smd", "cogef", "smd+cogef", "hal"])
    p.add_argument("--iterations", type=int, default=None, help="campaign.max_iterations (default: the config's)")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--no-run", action="store_true")
    args = p.parse_args(argv)
    base = args.workdir / "base"
    walls = {}
    if not args.no_run:
        base.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        if snakemake(base, args, targets=SHARED):
            print(f"the shared stage failed; see {base / 'campaign.log'}")
            return 1
        walls["base"] = time.time() - t0
    tables = {}
    for name in args.samplers:
        wd = workdir_of(args.workdir, name)
        if not args.no_run:
            if not (wd / "results").exists():
                shutil.copytree(base / "results", wd / "results", symlinks=True)
                shutil.copytree(base / "logs", wd / "logs", symlinks=True)
            config = arm_config(name, args.iterations)
            t0 = time.time()
            rc = snakemake(wd, args, config=[f"{k}={json.dumps(v)}" for k, v in config.items()])
            walls[name] = time.time() - t0
            if rc:
                print(f"{name}: snakemake failed (exit {rc}); see {wd / 'campaign.log'}")
                continue
        summary = wd / "results" / "summary.csv"
        if summary.exists():
            tables[name] = pd.read_csv(summary)
    for name, df in tables.items():
        print(f"\n== sampler {name}")
        print_table(df, walls.get(name), evaluations_of(workdir_of(args.workdir, name) / "results"))
    if "base" in walls:
        print(f"\nshared stage (reference, iteration 0's members, pulls, UQ, COGEF): {walls['base']:.0f} s wall")
    if tables:
        out = args.workdir / "samplers.png"
        figure(tables, out)
        print(f"figure: {out}")
        print("labels to COGEF |dEmax| < 1 kcal/mol: " + ", ".join(
            f"{n} {int(df.labels_total[df.cogef_abs_delta_e_max_kcal < 1].min())}"
            if (df.cogef_abs_delta_e_max_kcal < 1).any() else f"{n} not reached" for n, df in tables.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
