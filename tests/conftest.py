"""Shared test setup: one torch thread, and the helpers and the session-wide tiny campaign
that the end-to-end workflow tests (test_workflow.py, test_kill_points.py, test_slurm.py) share."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The test models are small: one torch thread is as fast as two and immune to a busy
    second core."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def snakemake(workdir, *args, configfile=TINY, timeout=900):
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(configfile), "--cores", "2",
           "--nocolor", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


def write_prepared_butane(directory) -> Path:
    """Unrelaxed butane written as the workflow's prepared molecule file (pulled groups in
    ``atoms.info``, as ``steps.reference.prepare_molecule`` writes them, without a labeller)."""
    from rarelearn.chem.molecules import load_molecule, write_prepared_molecule

    mol = load_molecule({"alkane": 4, "relax": False}, elements=["H", "C"])
    return write_prepared_molecule(mol, Path(directory) / "molecule.xyz")


def write_config(path, **overrides):
    cfg = yaml.safe_load(TINY.read_text())
    for dotted, value in overrides.items():
        node = cfg
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def jobs_run(stdout: str) -> dict:
    """Rule -> count from the first 'Job stats' table of a run's output (the plan)."""
    counts: dict[str, int] = {}
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            for row in lines[i + 3:]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    break
                if parts[0] != "total":
                    counts[parts[0]] = counts.get(parts[0], 0) + int(parts[1])
            break
    return counts


@pytest.fixture(scope="session")
def campaign(tmp_path_factory):
    """The tiny campaign, run once to the end (shared by every test module of the session)."""
    wd = tmp_path_factory.mktemp("campaign")
    t0 = time.time()
    res = snakemake(wd)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    print(f"tiny campaign took {time.time() - t0:.0f} s")
    return wd


def gfn2_atom_energies(elements=("H", "C")) -> dict:
    """Isolated-atom energies (eV) of GFN2-xTB (tblite), per element symbol."""
    from ase import Atoms
    from tblite.ase import TBLite

    energies = {}
    for s in elements:
        a = Atoms(s)
        a.calc = TBLite(method="GFN2-xTB", verbosity=0)
        energies[s] = float(a.get_potential_energy())
    return energies


def fd_forces(energy, positions, h: float) -> np.ndarray:
    """Central finite differences −∂E/∂x of ``energy(positions (N, 3))`` (a number or an
    array, e.g. one energy per member): shape ``energy``'s + (N, 3)."""
    x0 = np.asarray(positions, dtype=np.float64)
    out = None
    for i in range(x0.shape[0]):
        for c in range(3):
            xp, xm = x0.copy(), x0.copy()
            xp[i, c] += h
            xm[i, c] -= h
            d = -(np.asarray(energy(xp)) - np.asarray(energy(xm))) / (2 * h)
            if out is None:
                out = np.zeros(d.shape + x0.shape)
            out[..., i, c] = d
    return out


def fd_atoms_forces(energy_of_atoms, atoms, h: float) -> np.ndarray:
    """:func:`fd_forces` of a function of an ASE ``Atoms`` (called on moved copies)."""
    def energy(x):
        a = atoms.copy()
        a.positions = x
        return energy_of_atoms(a)

    return fd_forces(energy, atoms.positions, h)
