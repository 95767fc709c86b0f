"""Issue 8: kill -9 at 10 points of a tiny campaign, resume each time, same final data set.

One run of the tiny campaign is killed (SIGKILL to Snakemake's whole process group) while a
job of a chosen rule is running, resumed as the README tells a user (``snakemake --unlock``,
then the same command with ``--rerun-incomplete``), killed again at the next point, and so
on ten times, then run to the end. After every kill no output that was finished at an
earlier kill has been rewritten, and every data set, model and JSON file under a final name
reads back (nothing half-written). At the end the merged data set and the reference barrier
are those of the uninterrupted run with the same seeds (the session's ``campaign``).

Kill points are found by reading Snakemake's job announcements ("localrule train:" ...,
"jobid:", "wildcards:") from its streamed output; the kill comes once the job's script has
started (its log file is (re)created) plus a short delay. A job that ends before its kill
falls back to the next job that is running, so there are always ten kills.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO, SNAKEMAKE, TINY, jobs_run, snakemake
from rarelearn.dataset import read_frames

pytestmark = pytest.mark.slow

#: (rule, iteration) in campaign order; the kill for a point comes during that job or, if it
#: ended too soon, during the next job at or after it in this order.
KILL_POINTS = [
    ("train", 0), ("smd_batch", 0), ("uq", 0), ("label", 0), ("merge", 0), ("evaluate", 0),
    ("train", 1), ("select", 1), ("label", 1), ("evaluate", 1),
]
#: order of the rules within an iteration (reference stage before; summary, figures and potential after)
STAGES = ["initial_dataset", "train", "best_model", "smd_batch", "uq", "select", "label", "merge", "evaluate"]
#: seconds after a job's script has started (its log file was written) before the kill (a tiny SMD
#: replica or evaluation ends ~1 s after its log appears on an idle machine: killed at once)
DELAY = {"train": 1.5, "smd_batch": 0.1, "uq": 0.3, "select": 0.0, "label": 0.2, "merge": 0.0,
         "evaluate": 0.1, "best_model": 0.3}
#: the campaign stages the ten kills must hit while a job of theirs runs, whatever the timing
MUST_HIT = {"train", "smd_batch", "label", "evaluate"}
SEGMENT_TIMEOUT = 900


@dataclass
class Job:
    jobid: int
    rule: str
    t_seen: float
    log: str | None = None
    outputs: list = field(default_factory=list)
    wildcards: dict = field(default_factory=dict)

    @property
    def iteration(self) -> int | None:
        it = self.wildcards.get("iteration")
        return None if it is None else int(it)

    @property
    def key(self) -> tuple:
        """Position in campaign order (comparable with a kill point's key)."""
        if self.rule in ("summary", "figures", "potential", "all"):
            return (10**6, 0)
        if self.rule == "initial_dataset":
            return (0, 0)
        if self.iteration is None or self.rule not in STAGES:  # the reference stage
            return (-1, 0)
        return (self.iteration, STAGES.index(self.rule))

    def __str__(self) -> str:
        wc = ", ".join(f"{k}={v}" for k, v in self.wildcards.items())
        return f"{self.rule}({wc})"


def _point_key(point) -> tuple:
    rule, it = point
    return (it, STAGES.index(rule))


def _command(*extra) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(TINY), "--cores", "2",
            "--nocolor", *extra]


def _incomplete(wd: Path) -> set[Path]:
    """Outputs Snakemake has marked as incomplete (being made, or made by a killed job)."""
    marks = wd / ".snakemake" / "incomplete"
    out = set()
    for p in marks.rglob("*") if marks.exists() else ():
        if p.is_file() and p.name != "migration_underway":
            # long names are split into folders whose names start with "@"
            b64 = "".join(part.lstrip("@") for part in p.relative_to(marks).parts)
            try:
                out.add(wd / base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).decode())
            except ValueError:
                pass
    return out


def _final_files(wd: Path) -> list[Path]:
    """Files under results/ with a final name (not the temporary names atomic writes use)."""
    return sorted(p for p in (wd / "results").rglob("*")
                  if p.is_file() and not any(part.startswith(".") or part.endswith(".tmp")
                                             for part in p.relative_to(wd).parts))


def _finished(wd: Path) -> dict[Path, tuple[int, str]]:
    """path -> (mtime_ns, sha1) of every final file not marked incomplete by Snakemake."""
    inc = _incomplete(wd)
    out = {}
    for p in _final_files(wd):
        if p in inc or any(u in p.parents for u in inc):
            continue
        out[p] = (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
    return out


def _check_readable(wd: Path) -> None:
    """Every file under a final name is whole, whether or not its job was finished."""
    import torch

    for p in _final_files(wd):
        if p.name == "uq.h5":
            with h5py.File(p, "r") as h5:
                assert all("sigma" in g for g in h5.values()), f"{p}: incomplete UQ file"
        elif p.suffix == ".h5":
            read_frames(p)  # raises DatasetError naming the file if truncated or incomplete
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".pt":
            torch.load(p, weights_only=True)


class Segment:
    """One Snakemake run in its own process group, its output parsed while it streams."""

    def __init__(self, wd: Path, args: list[str], log_path: Path) -> None:
        self.wd = wd
        self.lines: queue.Queue = queue.Queue()
        self.log_path = log_path
        self.text: list[str] = []
        self.proc = subprocess.Popen(_command(*args), cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.running: dict[int, Job] = {}
        self._block: dict | None = None

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put((time.time(), line.rstrip("\n")))
        self.lines.put(None)

    def poll_lines(self) -> bool:
        """Parse what arrived: jobs announced and not yet finished are ``running``.
        False once the output has ended."""
        while True:
            try:
                item = self.lines.get_nowait()
            except queue.Empty:
                return True
            if item is None:
                return False
            t, line = item
            self.text.append(line)
            if m := re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line):
                self._block = {"rule": m.group(1)}
            elif self._block is not None and (m := re.match(r"^\s+(\w+): (.*)$", line)):
                key, value = m.groups()
                self._block[key] = value
                if key == "jobid":
                    job = Job(int(value), self._block["rule"], t,
                              log=self._block["log"].split(", ")[0] if "log" in self._block else None,
                              outputs=[o.split(" (")[0] for o in self._block.get("output", "").split(", ") if o])
                    self._block["job"] = self.running[job.jobid] = job
                elif key == "wildcards" and "job" in self._block:
                    self._block["job"].wildcards = dict(kv.split("=", 1) for kv in value.split(", "))
            else:
                self._block = None
                if m := re.match(r"^Finished jobid: (\d+)", line):
                    self.running.pop(int(m.group(1)), None)

    def job_started(self, job: Job) -> float | None:
        """When the job's script began (its log file was created after the job was announced)."""
        if job.log is None:
            return job.t_seen
        p = self.wd / job.log
        try:
            m = p.stat().st_mtime
        except FileNotFoundError:
            return None
        return m if m >= job.t_seen - 0.05 else None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.reader.join(30)
        self.poll_lines()
        self.log_path.write_text("\n".join(self.text))

    def tail(self, n: int = 6000) -> str:
        return "\n".join(self.text)[-n:]


def _kill_at(seg: Segment, point) -> dict:
    """Wait for a job of ``point`` (or, if it ends first, the next running job at or after it)
    and kill the whole run while it runs. Returns what was killed."""
    target = _point_key(point)
    armed: Job | None = None
    missed: set[int] = set()
    deadline = time.time() + SEGMENT_TIMEOUT
    while True:
        alive = seg.poll_lines()
        if armed is not None and armed.jobid not in seg.running:
            missed.add(armed.jobid)  # ended before its kill
            armed = None
        if armed is None:
            cands = [j for j in seg.running.values() if j.jobid not in missed and j.key >= target]
            if cands:
                # the target itself if it is running, else the earliest job after it
                armed = min(cands, key=lambda j: (j.key != target, j.key, j.t_seen))
        if armed is not None:
            started = seg.job_started(armed)
            now = time.time()
            if ((started is not None and now >= started + DELAY.get(armed.rule, 0.2))
                    or now > armed.t_seen + 30):
                seg.kill()
                return {"point": point, "job": armed, "rule": armed.rule, "iteration": armed.iteration,
                        "on_target": armed.key == target, "missed": len(missed),
                        "into_job_s": now - armed.t_seen}
        if not alive or seg.proc.poll() is not None and seg.lines.empty():
            seg.kill()
            pytest.fail(f"the run ended (rc {seg.proc.returncode}) before kill point {point}:\n" + seg.tail())
        if time.time() > deadline:
            seg.kill()
            pytest.fail(f"kill point {point} not reached in {SEGMENT_TIMEOUT} s:\n" + seg.tail())
        time.sleep(0.01)


def _labels(frames) -> dict:
    """hash -> (source, iteration, labeller, status, energy, forces) of every frame."""
    return {h: (frames.source[i], int(frames.iteration[i]), frames.labeller[i], frames.status[i],
                frames.energy[i], frames.forces[i]) for i, h in enumerate(frames.hashes)}


def test_kill_at_ten_points_and_resume_gives_the_uninterrupted_result(campaign, tmp_path):
    t0 = time.time()
    wd = tmp_path / "killed"
    wd.mkdir()
    done: dict[Path, tuple[int, str]] = {}
    kills = []
    for k, point in enumerate(KILL_POINTS):
        if k:
            unlock = snakemake(wd, "--unlock")  # the killed run's lock stays behind, as for a user
            assert unlock.returncode == 0, unlock.stdout[-2000:] + unlock.stderr[-2000:]
        seg = Segment(wd, ["--rerun-incomplete"] if k else [], tmp_path / f"segment_{k:02d}.log")
        kill = _kill_at(seg, point)
        inc = _incomplete(wd)
        outputs = [wd / o for o in kill["job"].outputs]
        kill["mid_job"] = any(o in inc or not o.exists() for o in outputs)
        kills.append(kill)
        # nothing finished at an earlier kill was made again...
        rewritten = [str(p.relative_to(wd)) for p, (m, h) in done.items()
                     if not p.exists() or p.stat().st_mtime_ns != m]
        assert not rewritten, f"after kill {k + 1} ({kill['job']}): finished outputs redone: {rewritten}"
        changed = [str(p.relative_to(wd)) for p, (m, h) in done.items()
                   if hashlib.sha1(p.read_bytes()).hexdigest() != h]
        assert not changed, f"after kill {k + 1}: contents of finished outputs changed: {changed}"
        # ...and nothing half-written lies under a final name
        _check_readable(wd)
        done.update({p: v for p, v in _finished(wd).items() if p not in done})
        print(f"kill {k + 1:2d} at {time.time() - t0:5.0f} s: point {point[0]} {point[1]:03d} -> killed "
              f"{kill['job']} {kill['into_job_s']:.1f} s after it was announced"
              f"{'' if kill['mid_job'] else ' (its outputs were already recorded as finished)'}"
              f"{'' if kill['on_target'] else ' [fallback: the point was missed]'}; "
              f"{len(done)} files finished")

    unlock = snakemake(wd, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    res = snakemake(wd, "--rerun-incomplete")
    (tmp_path / "segment_final.log").write_text(res.stdout + res.stderr)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    elapsed = time.time() - t0
    rewritten = [str(p.relative_to(wd)) for p, (m, h) in done.items()
                 if not p.exists() or p.stat().st_mtime_ns != m]
    assert not rewritten, f"the final resume redid finished outputs: {rewritten}"
    # A job cut off between renaming its outputs into place and Snakemake's bookkeeping keeps
    # its incomplete marker; if Snakemake met the job only through a checkpoint update (labels,
    # iteration 1) it takes the outputs as they are, which is right only because they are whole.
    lingering = _incomplete(wd)
    assert all(p.exists() for p in lingering), [str(p) for p in lingering]
    _check_readable(wd)

    hits = [(kl["rule"], kl["iteration"]) for kl in kills if kl["mid_job"]]
    if lingering:
        print("still marked incomplete, written whole and kept:", ", ".join(str(p.relative_to(wd)) for p in lingering))
    print(f"killed {len(kills)} times; jobs running at the kills: "
          + ", ".join(r if i is None else f"{r} {i:03d}" for r, i in hits))
    print(f"killed run with {len(kills)} resumes took {elapsed:.0f} s; whole test {time.time() - t0:.0f} s "
          "(after the uninterrupted campaign)")
    assert len(kills) == len(KILL_POINTS) == 10
    missing = MUST_HIT - {r for r, _ in hits}
    assert not missing, f"no kill while a job of {sorted(missing)} ran: {hits}"

    # the same final data set and labels as the uninterrupted run with the same seeds
    r_ref, r_got = campaign / "results", wd / "results"
    for it in ("iter_000", "iter_001"):
        ref, got = read_frames(r_ref / it / "merged.h5"), read_frames(r_got / it / "merged.h5")
        assert len(got) == len(ref), f"{it}/merged.h5: {len(got)} frames, uninterrupted {len(ref)}"
        assert sorted(got.hashes) == sorted(ref.hashes), f"{it}/merged.h5: other frames than uninterrupted"
        lab_ref, lab_got = _labels(ref), _labels(got)
        for h, (src, i, labeller, status, e, f) in lab_ref.items():
            g = lab_got[h]
            assert (g[0], g[1], g[2], g[3]) == (src, i, labeller, status), (it, h, g[:4], (src, i, labeller, status))
            np.testing.assert_allclose(g[4], e, rtol=0, atol=1e-8, err_msg=f"{it} frame {h} energy")
            np.testing.assert_allclose(g[5], f, rtol=0, atol=1e-7, err_msg=f"{it} frame {h} forces")
        m_ref = json.loads((r_ref / it / "merge.json").read_text())
        m_got = json.loads((r_got / it / "merge.json").read_text())
        for m in (m_ref, m_got):
            m.pop("label_seconds")
        assert m_got == m_ref, it
    b_ref = json.loads((r_ref / "reference" / "barrier.json").read_text())
    b_got = json.loads((r_got / "reference" / "barrier.json").read_text())
    assert json.dumps(b_got, sort_keys=True) == json.dumps(b_ref, sort_keys=True)


def test_resume_between_selection_and_labels_of_a_later_iteration_plans_the_labels(campaign, tmp_path):
    """A run stopped after iteration 1's selection, before its labels: the resume labels the
    selected batches and merges them (Snakemake alone would find iteration 1's `select`
    checkpoint too late and run `merge` on a placeholder, snakemake/snakemake#3862)."""
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    it = wd / "results" / "iter_001"
    shutil.rmtree(it / "labelled")
    for name in ("merged.h5", "merge.json", "evaluation.json", "unseen_predictions.json"):
        (it / name).unlink()
    res = snakemake(wd, "-n")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    n_batches = json.loads((it / "selected" / "selection.json").read_text())["batches"]
    out = res.stdout + res.stderr
    assert jobs_run(out).get("label") == n_batches > 0, out[-4000:]
