"""Check a campaign's result files and say what to rerun.

    python -m rarelearn.check [--configfile my.yaml ...] [--config KEY=VALUE ...]

run in the campaign's working directory, with the config options the campaign was run
with. It opens every file under ``results/`` (data sets, JSON, model files, CSV, PNG,
XYZ) and lists, with the rule that makes it, each one that cannot be read, and each one
that a finished stage should have left but is missing; then prints one command,
``snakemake --cores 2 --forcerun FILE ...``, that remakes them and everything made from
them. Exit status 0 when every file reads, 1 when something needs remaking, 2 for a bad
config.

Why a check: Snakemake remakes a missing file only when a job that needs it has to run.
A deleted ``results/iter_000/merged.h5`` whose iteration 1 is finished is left missing
("Nothing to be done"), and a file that is present but damaged counts as done. Forcing
the files (``--forcerun``) is what remakes them.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Iterable

__all__ = ["Problem", "rule_of", "expected_files", "check_file", "check_results", "repair_command", "main"]

#: A molecule's folder in a family campaign (none in a one-molecule campaign).
_MOL = r"(?:/molecules/[A-Za-z0-9_+-]+)?"
#: Which rule makes a result file (path relative to the working directory).
_RULES = [
    (rf"results/reference{_MOL}/(molecule\.xyz|atom_energies\.json)", "reference_molecule"),
    (rf"results/reference{_MOL}/md\.h5", "reference_md"),
    (rf"results/reference{_MOL}/smd/replica_\d+\.h5", "reference_smd"),
    (rf"results/reference{_MOL}/rounds/round_\d{{2}}\.json", "reference_round"),
    (rf"results/reference{_MOL}/barrier\.json", "reference_barrier"),
    (rf"results/reference{_MOL}/cogef\.(h5|json)", "reference_cogef"),
    (rf"results/iter_\d{{3}}{_MOL}/dataset\.h5", "initial_dataset"),
    (r"results/iter_\d{3}/models/member_\d+\.(pt|json)", "train"),
    (r"results/iter_\d{3}/(ensemble\.pt|best\.json)", "best_model"),
    (rf"results/iter_\d{{3}}{_MOL}/smd/replica_\d+\.h5", "smd"),
    (rf"results/iter_\d{{3}}{_MOL}/smd_hal/replica_\d+\.h5", "smd_hal"),
    (rf"results/iter_\d{{3}}{_MOL}/hal/run_\d+\.h5", "hal_run"),
    (rf"results/iter_\d{{3}}{_MOL}/cogef/member_\d+\.(h5|json)", "member_cogef"),
    (rf"results/iter_\d{{3}}{_MOL}/cogef\.(h5|json)", "cogef"),
    (rf"results/iter_\d{{3}}{_MOL}/uq\.h5", "uq"),
    (rf"results/iter_\d{{3}}{_MOL}/selected(/.*)?", "select"),
    (rf"results/iter_\d{{3}}{_MOL}/labelled/batch_\d+\.h5", "label"),
    (rf"results/iter_\d{{3}}{_MOL}/(merged\.h5|merge\.json)", "merge"),
    (rf"results/iter_\d{{3}}{_MOL}/replica_plan\.json", "replica_plan"),
    (rf"results/iter_\d{{3}}{_MOL}/(evaluation|unseen_predictions)\.json", "evaluate"),
    (r"results/summary\.csv", "summary"),
    (r"results/summary/molecules/[A-Za-z0-9_+-]+\.csv", "summary"),
    (r"results/figures/.*", "figures"),
    (r"results/potential/.*", "potential"),
    (r"results/studies/.*", "a study"),
]
#: The target a study file belongs to (a forced file is only remade when its target is asked for).
_STUDY_TARGETS = [("strain_rates", "strain_rates"), ("transfer", "transfer"), ("baselines", "baselines"),
                  ("smd_frames", "baselines")]


class Problem:
    """A result file that needs remaking: ``path`` (relative), what is wrong, its rule."""

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self.what = what
        self.rule = rule_of(path)

    def __repr__(self) -> str:
        return f"Problem({self.path!r}, {self.what!r})"

    def line(self) -> str:
        return f"{self.path}: {self.what} (rule {self.rule})"

    @property
    def target(self) -> str:
        """What to force: the file, or the folder a checkpoint writes as a whole."""
        m = re.match(rf"(results/iter_\d{{3}}{_MOL}/selected)(/|$)", self.path)
        return m.group(1) if m else self.path


def rule_of(path: str) -> str:
    """The rule that makes ``path`` (``results/...``), or "unknown"."""
    for pattern, rule in _RULES:
        if re.fullmatch(pattern, path):
            return rule
    return "unknown"


def expected_files(config: dict, root: Path = Path(".")) -> list[str]:
    """The result files a campaign with ``config`` must hold by now, judged by what it made:
    every file of an evaluated iteration; every file but the evaluation of an iteration
    whose successor has begun; the reference stage once an iteration was evaluated. The
    labelled batches follow the selection's batches. In a family, every molecule's files in
    its folder (a held-out molecule has no MD set, data set, UQ, selection nor merge)."""
    from .campaign_molecules import campaign_molecules

    res = root / "results"
    replicas = [f"{r:02d}" for r in range(config["reference"]["replicas"])]
    members = range(config["model"]["members"])
    kind = config["sampler"]["kind"]
    molecules = campaign_molecules(config)
    iterations = sorted(int(p.name[5:]) for p in res.glob("iter_[0-9][0-9][0-9]") if p.is_dir())
    out: list[str] = []
    evaluated = False
    for i in iterations:
        it = f"results/iter_{i:03d}"
        has_eval = any((root / f"{it}{m['dir']}" / "evaluation.json").exists() for m in molecules)
        if not has_eval and (i + 1) not in iterations:
            continue  # in progress (or cut off): nothing is missing yet
        evaluated |= has_eval
        out += [f"{it}/models/member_{k}.{ext}" for k in members for ext in ("pt", "json")]
        out += [f"{it}/ensemble.pt", f"{it}/best.json"]
        for m in molecules:
            mit = f"{it}{m['dir']}"
            out += [f"{mit}/smd/replica_{r}.h5" for r in replicas]
            if m["weight"] > 0:
                out += [f"{mit}/uq.h5", f"{mit}/selected/selection.json", f"{mit}/merged.h5", f"{mit}/merge.json"]
                if kind == "smd+hal":
                    out += [f"{mit}/smd_hal/replica_{r}.h5" for r in replicas]
                if kind == "hal":
                    out += [f"{mit}/hal/run_{r:02d}.h5" for r in range(config["sampler"]["runs"])]
                out += [f"{mit}/labelled/{p.name}" for p in sorted((root / mit / "selected").glob("batch_*.h5"))]
            if has_eval:
                out += [f"{mit}/evaluation.json", f"{mit}/unseen_predictions.json"]
                out += _close_replica_files(root, mit, config, len(replicas))
    if evaluated:
        for m in molecules:
            ref = f"results/reference{m['dir']}"
            out += [f"{ref}/molecule.xyz", f"{ref}/atom_energies.json", f"{ref}/barrier.json"]
            out += [f"{ref}/md.h5"] if m["md_frames"] > 0 else []
            out += [f"results/iter_000{m['dir']}/dataset.h5"] if m["weight"] > 0 else []
            out += [f"{ref}/smd/replica_{r}.h5" for r in replicas]
            out += [p for p in _reference_rounds_files(root, ref) if p not in out]
    return out


def _close_replica_files(root: Path, mit: str, config: dict, n: int) -> list[str]:
    """evaluation.close_replicas: an evaluated iteration's replica plan, and the pulls past
    the first ``n`` that it asked for (none when it cannot be read: the check names it)."""
    if config["evaluation"]["close_replicas"] is None or not (root / mit / "replica_plan.json").exists():
        return []   # a plan-less evaluation predates the key (the workflow says how to plan it)
    from .jsonio import ResultFileError, read_json

    out = [f"{mit}/replica_plan.json"]
    try:
        count = int(read_json(root / mit / "replica_plan.json")["replicas"])
    except (ResultFileError, KeyError, TypeError, ValueError):
        return out
    return out + [f"{mit}/smd/replica_{r:02d}.h5" for r in range(n, count)]


def _reference_rounds_files(root: Path, ref: str = "results/reference") -> list[str]:
    """The reference replicas and round decisions that barrier.json says it read (an
    adaptive reference's later rounds); none when it cannot be read (the check names it)."""
    from .jsonio import ResultFileError, read_json

    try:
        rec = read_json(root / ref / "barrier.json")
        files = list(rec.get("replicas", [])) + list((rec.get("rounds") or {}).get("decisions", []))
    except (ResultFileError, AttributeError, TypeError):
        return []
    return [str(p) for p in files if isinstance(p, str) and p.startswith(f"{ref}/")]


def _reason(path: str, exc: BaseException) -> str:
    """The error's message without the file name and the remake advice (the check gives both)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in (f"{path}: ", f"{Path(path).resolve()}: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.split("; remake it")[0]


def check_file(path: Path) -> str | None:
    """What is wrong with one result file (None: it reads). Data sets are read whole, JSON
    parsed, model files loaded (``weights_only=True``), CSV parsed, PNG checked for their
    signature and end, XYZ read with ASE; other files are only checked to be readable."""
    import h5py

    from .dataset import read_frames
    from .models.files import read_model_blob
    from .jsonio import read_json

    name = str(path)
    try:
        if path.stat().st_size == 0:
            return "empty file"
        suffix = path.suffix
        if suffix == ".h5" and path.name == "uq.h5":
            with h5py.File(path, "r") as h5:
                for group in h5.values():
                    group["sigma"][()], group["energies"][()], float(group.attrs["threshold"])
        elif suffix == ".h5":
            read_frames(path)
        elif suffix == ".json":
            read_json(path)
        elif suffix == ".pt":
            read_model_blob(path)
        elif suffix == ".csv":
            import pandas as pd

            if pd.read_csv(path).empty:
                return "CSV file with no rows"
        elif suffix == ".png":
            data = path.read_bytes()
            if not data.startswith(b"\x89PNG\r\n\x1a\n") or b"IEND" not in data[-16:]:
                return "not a complete PNG image (truncated or corrupt)"
        elif suffix == ".xyz":
            from ase.io import read

            read(path, index=":", format="extxyz")
        else:
            path.read_bytes()
    except Exception as exc:  # any reader's error: the file is damaged for the workflow
        return _reason(name, exc)
    return None


def _is_temporary(path: Path) -> bool:
    """Not a result: a temporary file of an atomic write (``.name.XXXX.tmp``) left by a
    killed job, or Snakemake's own marker in a folder output (``.snakemake_timestamp``)."""
    return (path.name.startswith(".") and path.name.endswith(".tmp")) or path.name.startswith(".snakemake")


def check_results(config: dict, root: Path = Path("."), log=None) -> tuple[list[Problem], int]:
    """Every problem of the results under ``root`` (missing, then unreadable files, in path
    order) and how many files were opened."""
    root = Path(root)
    problems: list[Problem] = []
    for rel in expected_files(config, root):
        if not (root / rel).exists():
            problems.append(Problem(rel, "missing"))
    opened = 0
    for path in sorted((root / "results").rglob("*")):
        if not path.is_file() or _is_temporary(path):
            continue
        rel = path.relative_to(root).as_posix()
        what = check_file(path)
        opened += 1
        if what is not None:
            problems.append(Problem(rel, what))
        if log is not None and opened % 200 == 0:
            log(f"... {opened} files opened")
    return problems, opened


def repair_command(problems: Iterable[Problem], extra: str = "") -> str:
    """One ``snakemake`` command that remakes the problem files and everything made from
    them (``--forcerun`` of each; the study targets its files belong to)."""
    targets, forced = [], []
    for p in problems:
        if p.target not in forced:
            forced.append(p.target)
        if p.rule == "a study":
            for key, target in _STUDY_TARGETS:
                if key in p.path and target not in targets:
                    targets.append(target)
                    break
    if targets:
        targets = ["all"] + targets
    words = ["snakemake", "--cores", "2", *targets, *([extra] if extra else []), "--forcerun", *forced]
    return " ".join(words)


def main(argv=None) -> int:
    import argparse
    import shlex

    from .config import DEFAULT_CONFIG, ConfigError, campaign_config, command_line_overrides

    p = argparse.ArgumentParser(prog="python -m rarelearn.check",
                                description="Open every file under results/ and name what to rerun. Give the "
                                            "config options the campaign ran with.")
    p.add_argument("--configfile", nargs="*", default=[], metavar="FILE", help="as given to snakemake")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="as given to snakemake")
    p.add_argument("--directory", "-d", default=".", help="the campaign's working directory (default: here)")
    args = p.parse_args(argv)
    root = Path(args.directory)
    try:
        cfg = campaign_config(command_line_overrides(args.configfile, args.config), base_file=DEFAULT_CONFIG,
                              base_dir=root, check_labeller=False)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if not (root / "results").is_dir():
        print(f"no results/ in {root.resolve()}: run this where snakemake ran", file=sys.stderr)
        return 2
    problems, opened = check_results(cfg, root, log=lambda m: print(m, file=sys.stderr))
    if not problems:
        print(f"results ok: {opened} files opened, none missing")
        return 0
    for prob in problems:
        print(prob.line())
    extra = []
    if args.configfile:
        extra.append("--configfile " + " ".join(shlex.quote(f) for f in args.configfile))
    if args.config:
        extra.append("--config " + " ".join(shlex.quote(c) for c in args.config))
    n = len(problems)
    print(f"{n} result file{'s' if n > 1 else ''} to remake ({opened} opened). Run (with your usual options, "
          "e.g. --profile slurm); it remakes them and everything made from them:")
    print("  " + repair_command(problems, " ".join(extra)))
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
