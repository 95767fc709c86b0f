"""Soft-mode frames (rarelearn.learning.soft_modes) and the constrained modes behind them
(rarelearn.md.hessian), on the toy chain of test_cogef.py: two weak Morse bonds between
compliant strong ones, pulled at the ends."""
import numpy as np
import pytest
from ase import Atoms

from rarelearn.learning.soft_modes import continued_chain, descent_starts_beyond, soft_mode_frames, window_images
from rarelearn.md.cogef import cogef_profile
from rarelearn.md.hessian import constrained_modes
from test_cogef import MorseBonds

R0 = 1.5


def _chain():
    atoms = Atoms("C6", positions=[(k * R0, 0, 0) for k in range(6)])
    strong, weak = (5.0, 0.5), (1.0, 2.0)
    calc = MorseBonds([(0, 1, *strong, R0), (1, 2, *weak, R0), (2, 3, *strong, R0), (3, 4, *weak, R0),
                       (4, 5, *strong, R0)])
    return atoms, calc


@pytest.fixture(scope="module")
def path():
    atoms, calc = _chain()
    p = cogef_profile(atoms, calc, (0, 5), step=0.1, max_extension=4.0, fmax=1e-4, max_opt_steps=5000,
                      refine_tol_kcal=0.01)
    assert p.broke
    fr = p.frames
    fr.extras["potential_energy"] = np.asarray(p.energy)
    return fr, calc


def test_constrained_modes_are_the_internal_curvatures(path):
    fr, calc = path
    k = 5
    atoms = Atoms(numbers=fr.numbers, positions=fr.positions[k])
    w, modes = constrained_modes(atoms, calc, (0, 5))
    n = len(atoms)
    assert len(w) == 3 * n - 6 and np.all(np.diff(w) >= -1e-12)   # linear: 3 translations, 2 rotations, the pull
    flat = modes.reshape(len(w), -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(len(w)), atol=1e-8)
    stretch = np.zeros((n, 3))
    stretch[0, 0], stretch[5, 0] = -1, 1
    for t in range(3):   # no translation, no change of the pulled distance
        shift = np.zeros((n, 3))
        shift[:, t] = 1
        assert np.abs(flat @ shift.ravel()).max() < 1e-8
    assert np.abs(flat @ stretch.ravel()).max() < 1e-8
    # each eigenvalue is the curvature of the energy along its mode (a relaxed image: no slope)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    for m in (0, len(w) - 1):
        t = 1e-3
        e = []
        for s in (t, -t):
            b = atoms.copy()
            b.calc = calc
            b.positions = atoms.positions + s * modes[m]
            e.append(b.get_potential_energy())
        assert (e[0] + e[1] - 2 * e0) / t**2 == pytest.approx(w[m], rel=1e-3, abs=1e-4)


def test_soft_mode_frames_displace_the_images_before_the_maximum_along_the_antisymmetric_mode(path):
    fr, calc = path
    picks = window_images(fr, 0.3, 4)
    ext = fr.extras["extension"]
    top = int(np.argmax(np.where(fr.extras["intact"] > 0.5, fr.extras["potential_energy"], -np.inf)))
    assert len(picks) == 4 and picks[-1] == top
    assert np.all(ext[picks] >= ext[top] - 0.3 - 1e-9) and np.all(np.diff(ext[picks]) > 0)
    frames = soft_mode_frames(fr, calc, (0, 5), window=0.3, n_images=4, amplitudes=(0.1, 0.2))
    assert len(frames) == 4 * 2 * 2 and set(frames.source) == {"soft-mode"}
    np.testing.assert_allclose(np.abs(frames.extras["soft_mode_amplitude"]), [0.1, 0.1, 0.2, 0.2] * 4)
    base = np.repeat(fr.positions[picks], 4, axis=0)
    shift = frames.positions - base
    np.testing.assert_allclose(np.linalg.norm(shift, axis=2).max(axis=1), np.abs(frames.extras["soft_mode_amplitude"]))
    # the pulled distance changes only to second order
    d = np.linalg.norm(frames.positions[:, 5] - frames.positions[:, 0], axis=1)
    d0 = np.linalg.norm(base[:, 5] - base[:, 0], axis=1)
    assert np.abs(d - d0).max() < 1e-6
    # near the end of the intact branch the softest mode stretches one weak bond and shortens the other
    last = shift[-1]
    assert np.sign(last[2, 0] - last[1, 0]) != np.sign(last[4, 0] - last[3, 0])
    assert frames.extras["soft_mode_eigenvalue"][-1] < frames.extras["soft_mode_eigenvalue"][0]


def test_no_intact_image_gives_no_frames(path):
    fr, calc = path
    broken = fr.subset(np.flatnonzero(fr.extras["intact"] < 0.5))
    assert len(window_images(broken, 0.3, 4)) == 0
    assert len(soft_mode_frames(broken, calc, (0, 5))) == 0


def test_the_chain_continued_past_the_maximum_stays_intact_and_symmetric(path):
    """descent_beyond's starts: past the potential's own maximum (where its scan, on the stable
    branch, broke one weak bond) the chain is continued symmetric, the pulled distance stepped
    exactly, and each image displaced along the antisymmetric mode."""
    fr, calc = path
    top = int(np.argmax(np.where(fr.extras["intact"] > 0.5, fr.extras["potential_energy"], -np.inf)))
    assert fr.extras["intact"][top + 1] < 0.5          # the scan itself broke right after the top
    chain = continued_chain(fr, calc, (0, 5), beyond=0.2, n_images=2)
    assert len(chain) == 2
    np.testing.assert_allclose(chain.extras["extension"], fr.extras["extension"][top] + np.array([0.1, 0.2]))
    d_top = np.linalg.norm(fr.positions[top, 5] - fr.positions[top, 0])
    d = np.linalg.norm(chain.positions[:, 5] - chain.positions[:, 0], axis=1)
    np.testing.assert_allclose(d, d_top + np.array([0.1, 0.2]), atol=1e-6)
    x = chain.positions[:, :, 0]
    weak_a, weak_b = x[:, 2] - x[:, 1], x[:, 4] - x[:, 3]
    np.testing.assert_allclose(weak_a, weak_b, atol=1e-4)          # symmetric: both weak bonds alike
    assert np.all(weak_a > (fr.positions[top, 2, 0] - fr.positions[top, 1, 0]))   # and longer than at the top
    assert np.all(chain.extras["potential_energy"] > fr.extras["potential_energy"][top])
    starts = descent_starts_beyond(fr, calc, (0, 5), beyond=0.2, n_images=2)
    assert len(starts) == 2 and set(starts.source) == {"soft-mode"}
    shift = starts.positions - chain.positions
    np.testing.assert_allclose(np.linalg.norm(shift, axis=2).max(axis=1), [0.1, 0.1])
    for s in shift:                                            # one weak bond longer, the other shorter
        assert np.sign(s[2, 0] - s[1, 0]) != np.sign(s[4, 0] - s[3, 0])
    assert np.all(starts.extras["soft_mode_eigenvalue"] < 0)  # past the bifurcation: a saddle
    assert len(continued_chain(fr, calc, (0, 5), beyond=0.0, n_images=2)) == 0
