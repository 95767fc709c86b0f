"""One ASE calculator call per MD step: the energy and forces the LAMMPS engine
(:mod:`rarelearn.md.engine`) feeds to ``fix external``."""
from __future__ import annotations

import numpy as np

__all__: list[str] = []


class _Evaluator:
    """Energy (eV) and forces (eV/Å) from an ASE calculator, one calculator call per step.

    ASE's ``get_potential_energy`` + ``get_forces`` may run two calculations with
    calculators that compute forces only on request; here ``calculate`` is called once
    with both properties. Only the positions change between steps (the atoms object is
    private to the run), so after the first call the state comparison of
    ``check_state`` is skipped and ``system_changes = ["positions"]`` is passed, which
    lets e.g. tblite reuse its wavefunction as the SCF guess.
    """

    def __init__(self, calc, atoms) -> None:
        self.calc = calc
        self.atoms = atoms
        self.fast = (hasattr(calc, "results") and hasattr(calc, "check_state")
                     and hasattr(calc, "calculate"))
        self.first = True

    def __call__(self, pos: np.ndarray) -> tuple[float, np.ndarray]:
        calc, atoms = self.calc, self.atoms
        atoms.positions[:] = pos
        if self.fast:
            if self.first:
                changes = calc.check_state(atoms)
                self.first = False
            else:
                changes = ["positions"]
            if changes:
                calc.atoms = None
                calc.results = {}
            if "energy" not in calc.results or "forces" not in calc.results:
                calc.calculate(atoms, ["energy", "forces"], changes)
                if getattr(calc, "atoms", None) is None and getattr(calc, "use_cache", True):
                    calc.atoms = atoms.copy()
            res = calc.results
            if "energy" in res and "forces" in res:
                return float(res["energy"]), np.asarray(res["forces"], dtype=np.float64)
        return (float(calc.get_potential_energy(atoms)),
                np.asarray(calc.get_forces(atoms), dtype=np.float64))

    def batched(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batched contract of :class:`_Engine` for one copy: (1, N, 3) -> (1,), (1, N, 3)."""
        e, f = self(pos[0])
        return np.array([e]), f[None]
