"""Hyperactive learning (HAL): uncertainty-biased sampling with a committee.

After van der Oord, Sachs, Kovács, Ortner & Csányi (2022), "Hyperactive learning
for data-driven interatomic potentials". Units: eV, Å.

The committee is any ASE calculator that, after ``calc.calculate(atoms, properties,
system_changes)``, holds

* ``calc.results["energies"]``      (K,)      member energies, eV
* ``calc.results["member_forces"]`` (K, N, 3) member forces, eV/Å

(``rarelearn.models.ani.NNPCalculator`` does, when ``"member_forces"`` is among the
requested properties, which :class:`HALCalculator` always asks for.)

Biased potential (paper eq. 1, 9, 10)::

    E_HAL = Ē − τ σ,      σ² = (1/K) Σ_k (E_k − Ē)²          (ddof = 0)
    F_HAL = −∇E_HAL = F̄ + τ ∇σ
    ∇σ² = (2/K) Σ_k (E_k − Ē)(∇E_k − ∇Ē) = (2/K) Σ_k (E_k − Ē)(F̄ − F_k)
    ∇σ  = ∇σ² / (2σ)

Adaptive bias strength (paper eq. 12): with a relative strength τ_r (0.05–0.25)
the τ used at step n is::

    τ_n = τ_r · Σ_{m=n−w}^{n−1} ‖F̄_m‖ / Σ_{m=n−w}^{n−1} ‖∇σ_m‖

over the previous ``window`` = w steps (the current step is *not* included, so τ
is a constant within a step and F_HAL is exactly −∇E_HAL). ‖·‖ is, by default,
the Frobenius norm of the whole (N, 3) array of one step,
sqrt(Σ_i Σ_α X_iα²) (``norm="frobenius"``); ``norm="atomwise"`` uses the sum of
the per-atom Euclidean norms Σ_i ‖X_i‖ instead. Both are the same ratio up to how
single large atoms weigh in; the paper does not say which it uses. During the
first ``burn_in`` steps (default: ``window``) τ = 0: plain MD that only records
the norms.

Stop-and-label criterion (paper eq. 6–8): relative force uncertainty per atom::

    f_i = (1/K) Σ_k ‖F_i^k − F̄_i‖ / (‖F̄_i‖ + ε),     ε ≈ 0.2 eV/Å

trigger when max_i softmax(f)_i > s_tol (0.5), or when max_i f_i > f_tol.

:class:`HALCalculator` is an ordinary ASE calculator (energy and forces computed
together in one call, so one MD step is one committee evaluation). It can be
combined with a steering spring through ``ase.calculators.mixing.SumCalculator``;
the shared properties there are ``energy`` and ``forces`` (and ``free_energy``).
The statistics and stop criteria live in :mod:`rarelearn.learning.hal_stats`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .hal_stats import (HALError, StopCriterion, _check_committee_arrays, committee_stats, max_softmax,
                        relative_force_uncertainty)

__all__ = [
    "COMMITTEE_PROPERTIES",
    "HALCalculator",
    "HALMonitor",
    "HALRecord",
    "hand_over",
]

#: Properties asked of the committee calculator on every step.
COMMITTEE_PROPERTIES = ("energy", "forces", "energies", "member_forces")

_NORMS = ("frobenius", "atomwise")


# ---------------------------------------------------------------------- calculator
@dataclass
class HALRecord:
    """One HAL step (one committee evaluation)."""

    step: int
    tau: float  # τ used at this step, eV/eV (dimensionless)
    sigma: float  # σ, eV
    mean_energy: float  # Ē, eV
    hal_energy: float  # Ē − τσ, eV
    mean_force_norm: float  # ‖F̄‖ (see module doc for the norm), eV/Å
    grad_sigma_norm: float  # ‖∇σ‖, eV/Å
    f_max: float  # max_i f_i
    softmax_max: float  # max_i softmax(f)_i
    stop: bool | None = field(default=None)  # the stop criterion's verdict, when one is set


class HALCalculator(Calculator):
    """Biased committee calculator: E_HAL = Ē − τσ, F_HAL = F̄ + τ∇σ.

    Parameters
    ----------
    committee : ASE calculator filling ``results["energies"]`` (K,) and
        ``results["member_forces"]`` (K, N, 3) (see module doc)
    tau : fixed bias strength τ ≥ 0 (eV per eV of σ: dimensionless)
    tau_rel : relative bias strength τ_r ≥ 0 (paper: 0.05–0.25) → adaptive τ.
        Give exactly one of ``tau`` and ``tau_rel``.
    window : number of previous steps the adaptive τ averages over (paper: 100)
    burn_in : steps at τ = 0 before the adaptive τ starts (default: ``window``);
        with burn_in < window the first adaptive steps use the history there is
    tau_max : optional upper bound on the adaptive τ
    norm : "frobenius" (default) or "atomwise", the per-step norm ‖·‖ of the adaptive τ
    eps : ε of the relative force uncertainty recorded per step, eV/Å (default: the
        stop criterion's, else 0.2)
    stop : optional :class:`StopCriterion`; its verdict is stored in ``results["stop"]``
        and in the history

    Results (all computed together on every new configuration)
    -------
    energy, free_energy : E_HAL, eV
    forces : F_HAL, (N, 3) eV/Å
    energies : (K,) member energies; member_forces : (K, N, 3)
    sigma : σ, eV; tau : τ used at this step
    mean_energy : Ē; mean_forces : F̄; grad_sigma : ∇σ
    rel_force_uncertainty : f_i (N,); stop : bool (only with ``stop``)

    ``history`` holds one :class:`HALRecord` per step (not cleared by ASE's
    ``reset()``; use :meth:`clear_history`). Asking for energy and then forces of the
    same configuration is one step. τ of a step depends only on earlier steps.
    """

    implemented_properties = [
        "energy", "forces", "energies", "sigma", "tau",
        "free_energy", "member_forces", "mean_energy", "mean_forces", "grad_sigma",
        "rel_force_uncertainty", "stop",
    ]
    default_parameters: dict = {}

    def __init__(self, committee, tau: float | None = None, tau_rel: float | None = None,
                 window: int = 100, burn_in: int | None = None, tau_max: float | None = None,
                 norm: str = "frobenius", eps: float | None = None,
                 stop: StopCriterion | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if committee is None or not hasattr(committee, "calculate"):
            raise HALError("committee must be an ASE calculator (with a calculate method)")
        if (tau is None) == (tau_rel is None):
            raise HALError("give exactly one of tau (fixed) and tau_rel (adaptive)")
        if isinstance(window, bool) or int(window) != window or window < 1:
            raise HALError(f"window must be a positive integer, got {window!r}")
        if burn_in is None:
            burn_in = window
        if isinstance(burn_in, bool) or int(burn_in) != burn_in or burn_in < 0:
            raise HALError(f"burn_in must be an integer >= 0, got {burn_in!r}")
        if norm not in _NORMS:
            raise HALError(f"unknown norm {norm!r}; known: {', '.join(_NORMS)}")
        if tau_max is not None and not (np.isfinite(tau_max) and tau_max >= 0):
            raise HALError(f"tau_max must be finite and >= 0, got {tau_max}")
        if stop is not None and not isinstance(stop, StopCriterion):
            raise HALError(f"stop must be a StopCriterion, got {type(stop).__name__}")
        if eps is None:
            eps = stop.eps if stop is not None else 0.2
        if not eps > 0.0:
            raise HALError(f"eps must be > 0 eV/Å, got {eps}")
        self.committee = committee
        self.window = int(window)
        self.burn_in = int(burn_in)
        self.tau_max = None if tau_max is None else float(tau_max)
        self.norm = norm
        self.eps = float(eps)
        self.stop = stop
        self.history: list[HALRecord] = []
        self._tau_fixed: float | None = None
        self._tau_rel: float | None = None
        if tau is not None:
            self.tau = tau
        else:
            self.tau_rel = tau_rel

    # ------------------------------------------------------------------ τ control
    @staticmethod
    def _check_strength(name: str, value) -> float:
        value = float(value)
        if not (np.isfinite(value) and value >= 0.0):
            raise HALError(f"{name} must be finite and >= 0, got {value}")
        return value

    @property
    def adaptive(self) -> bool:
        return self._tau_rel is not None

    @property
    def tau_rel(self) -> float | None:
        """τ_r of the adaptive mode (None in fixed mode). Setting it switches to adaptive τ."""
        return self._tau_rel

    @tau_rel.setter
    def tau_rel(self, value: float) -> None:
        self._tau_rel = self._check_strength("tau_rel", value)
        self._tau_fixed = None

    @property
    def tau(self) -> float:
        """τ the next step will use. Setting it switches to a fixed τ."""
        return self.next_tau()

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau_fixed = self._check_strength("tau", value)
        self._tau_rel = None

    def _norm(self, x: np.ndarray) -> float:
        if self.norm == "frobenius":
            return float(np.sqrt(np.sum(x * x)))
        return float(np.linalg.norm(x, axis=1).sum())

    def next_tau(self) -> float:
        """τ for the next step, from the history of the previous ``window`` steps only."""
        if self._tau_fixed is not None:
            return self._tau_fixed
        n = len(self.history)
        if n == 0 or n < self.burn_in:
            return 0.0
        recent = self.history[-self.window:]
        f_sum = sum(r.mean_force_norm for r in recent)
        g_sum = sum(r.grad_sigma_norm for r in recent)
        if not g_sum > 0.0:
            return 0.0
        tau = self._tau_rel * f_sum / g_sum
        if self.tau_max is not None:
            tau = min(tau, self.tau_max)
        return float(tau)

    @property
    def last_tau(self) -> float | None:
        """τ used at the latest step (None before the first)."""
        return self.history[-1].tau if self.history else None

    def clear_history(self) -> None:
        """Forget the recorded steps (the adaptive τ starts a new burn-in)."""
        self.history = []

    def history_arrays(self) -> dict[str, np.ndarray]:
        """The history as one array per :class:`HALRecord` field."""
        names = list(HALRecord.__dataclass_fields__)
        if not self.history:
            return {k: np.zeros(0) for k in names}
        rows = [asdict(r) for r in self.history]
        out = {}
        for k in names:
            vals = [r[k] for r in rows]
            if k == "stop":
                out[k] = np.array([bool(v) if v is not None else False for v in vals])
            elif k == "step":
                out[k] = np.array(vals, dtype=np.int64)
            else:
                out[k] = np.array(vals, dtype=np.float64)
        return out

    # ------------------------------------------------------------------ evaluation
    def _committee_results(self, atoms) -> tuple[np.ndarray, np.ndarray]:
        c = self.committee
        c.calculate(atoms, list(COMMITTEE_PROPERTIES), all_changes)
        res = getattr(c, "results", {})
        missing = [k for k in ("energies", "member_forces") if k not in res]
        if missing:
            raise HALError(
                f"committee calculator {type(c).__name__} did not fill results {missing}; "
                "HAL needs results['energies'] (K,) and results['member_forces'] (K, N, 3)")
        e, f = _check_committee_arrays(res["energies"], res["member_forces"])
        if f.shape[1] != len(atoms):
            raise HALError(f"committee member forces cover {f.shape[1]} atoms, the system has {len(atoms)}")
        return e, f

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        if not system_changes and "tau" in self.results:
            return  # same configuration, everything already computed: still the same step
        super().calculate(atoms, properties, system_changes)
        tau = self.next_tau()  # from earlier steps only: constant within this step
        energies, mforces = self._committee_results(self.atoms)
        st = committee_stats(energies, mforces)
        sigma, grad_sigma = st["sigma"], st["grad_sigma"]
        e_hal = st["mean_energy"] - tau * sigma
        f_hal = st["mean_forces"] + tau * grad_sigma
        f_rel = relative_force_uncertainty(mforces, self.eps)
        verdict = None
        if self.stop is not None:
            f_stop = f_rel if self.stop.eps == self.eps else relative_force_uncertainty(mforces, self.stop.eps)
            verdict = bool(self.stop.score_from_f(f_stop) > self.stop.tol)
        self.results = {
            "energy": float(e_hal),
            "free_energy": float(e_hal),
            "forces": f_hal,
            "energies": energies.copy(),
            "member_forces": mforces.copy(),
            "sigma": float(sigma),
            "tau": float(tau),
            "mean_energy": st["mean_energy"],
            "mean_forces": st["mean_forces"],
            "grad_sigma": grad_sigma,
            "rel_force_uncertainty": f_rel,
        }
        if verdict is not None:
            self.results["stop"] = verdict
        self.history.append(HALRecord(
            step=len(self.history),
            tau=float(tau),
            sigma=float(sigma),
            mean_energy=st["mean_energy"],
            hal_energy=float(e_hal),
            mean_force_norm=self._norm(st["mean_forces"]),
            grad_sigma_norm=self._norm(grad_sigma),
            f_max=float(f_rel.max()) if f_rel.size else 0.0,
            softmax_max=max_softmax(f_rel) if f_rel.size else 0.0,
            stop=verdict,
        ))


# ---------------------------------------------------------------------- MD hook
class HALMonitor:
    """The ``stop_when`` hook of :func:`rarelearn.md.dynamics.run_md` for a HAL run.

    Called after every force evaluation of the run with ``(step, positions, energy,
    forces)``; it reads the verdict the :class:`HALCalculator` (built with a
    :class:`StopCriterion`) stored for that very evaluation, records per step

    * ``tau``   τ used (dimensionless)
    * ``sigma`` σ, the committee's energy spread (eV)
    * ``score`` the stop criterion's value (max softmax(f) or max f)

    and returns ``"HAL stop criterion fired: ..."`` when the criterion fired, None
    otherwise. ``per_step[step] = (tau, sigma, score)``; ``fired_at`` is the step it
    fired at (None until then).
    """

    def __init__(self, calc: HALCalculator) -> None:
        if not isinstance(calc, HALCalculator) or calc.stop is None:
            raise HALError("HALMonitor needs a HALCalculator built with a StopCriterion (stop=...)")
        self.calc = calc
        self.per_step: dict[int, tuple[float, float, float]] = {}
        self.fired_at: int | None = None

    def __call__(self, step: int, positions=None, energy=None, forces=None) -> str | None:
        res, crit = self.calc.results, self.calc.stop
        if "stop" not in res:
            raise HALError("the HAL calculator has no stop verdict for this step")
        f = res["rel_force_uncertainty"]
        if crit.eps != self.calc.eps:
            f = relative_force_uncertainty(res["member_forces"], crit.eps)
        score = crit.score_from_f(f)
        self.per_step[int(step)] = (float(res["tau"]), float(res["sigma"]), float(score))
        if not res["stop"]:
            return None
        self.fired_at = int(step)
        i = int(np.argmax(f))
        return (f"HAL stop criterion fired: {crit.kind} score {score:.3f} > {crit.tol:g} at step {int(step)} "
                f"(atom {i}, f_i {float(f[i]):.2f}; sigma {float(res['sigma']):.4f} eV, tau {float(res['tau']):.3g})")

    def values(self, steps) -> dict[str, np.ndarray]:
        """``tau``, ``sigma``, ``score`` at the given steps (NaN where not recorded)."""
        rows = [self.per_step.get(int(s), (np.nan, np.nan, np.nan)) for s in np.asarray(steps).ravel()]
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
        return {"tau": arr[:, 0], "sigma": arr[:, 1], "score": arr[:, 2]}


def hand_over(frames, fallback: str) -> tuple[bool, int, str]:
    """The hand-over rule of a HAL run: which recorded frame goes to labelling.

    The firing frame (the last one) when the stop criterion fired (``attrs["stop_requested"]``);
    for a run that ended without firing (``max_steps`` reached, or a blow-up, which stops
    cleanly and drops its bad step) its most uncertain recorded frame (highest extras
    ``hal_score``) when ``fallback`` is ``"most_uncertain"``, nothing when it is ``"none"``.

    Returns
    -------
    (fired, index of the frame handed over or −1, the reason in words)
    """
    fired = bool(frames.attrs.get("stop_requested")) and len(frames) > 0
    if fired:
        return fired, len(frames) - 1, "stop criterion fired"
    if fallback == "most_uncertain" and len(frames):
        return fired, int(np.nanargmax(frames.extras["hal_score"])), "most uncertain recorded frame (no stop)"
    return fired, -1, "none (no stop)"
