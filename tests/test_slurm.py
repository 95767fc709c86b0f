"""`snakemake --profile slurm` on a real SLURM cluster (single node, with accounting).

The session fixture starts the cluster with tests/slurm_cluster.sh (installing the Debian
packages when missing; needs root) and stops it at the end. When it cannot start, the
tests fail with the script's output: they never skip.

One SLURM run of the tiny campaign serves both tests: it is killed (SIGKILL to the
process group of Snakemake) in the middle, its leftover SLURM jobs are cancelled, and the
same command is run again to the end. Then
  a. sacct shows every SLURM job of the finishing run COMPLETED, one per job Snakemake
     ran remotely, in the partitions, accounts and CPU counts the profile asks for, and
     the results equal those of a local run (--cores 2) of the same config (the session's
     tiny ``campaign``, shared with the other end-to-end tests);
  b. the rerun finished the campaign without rewriting any output that was finished
     when Snakemake was killed.
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
PROFILE = REPO / "slurm"
CLUSTER_SCRIPT = REPO / "tests" / "slurm_cluster.sh"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
STATE = Path(os.environ.get("RARELEARN_SLURM_STATE", "/tmp/rarelearn-slurm"))
SLURM_CMD = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--profile", str(PROFILE),
             "--configfile", str(TINY), "--nocolor"]
RUN_TIMEOUT = 1800

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_script(action: str, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = ["bash", str(CLUSTER_SCRIPT), action]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return subprocess.CompletedProcess(cmd, 124, out + f"\n(timed out after {timeout} s)", err)


@pytest.fixture(scope="session")
def slurm_env():
    """A running test cluster; the environment for its clients. Stopped at the end,
    unless it was already running before (then whoever started it stops it)."""
    if os.geteuid() != 0:
        pytest.fail("the SLURM tests start a cluster with tests/slurm_cluster.sh and need root")
    was_up = _cluster_script("status", timeout=60).returncode == 0
    t0 = time.time()
    res = _cluster_script("start")
    print(f"\n[slurm] cluster start: {time.time() - t0:.1f} s\n{res.stdout}")
    if res.returncode != 0:
        if not was_up:
            _cluster_script("stop", timeout=300)
        pytest.fail(f"tests/slurm_cluster.sh start failed (rc {res.returncode}):\n"
                    f"{res.stdout[-6000:]}\n{res.stderr[-6000:]}", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_CONF=str(STATE / "etc" / "slurm.conf"), OMP_NUM_THREADS="1")
    yield env
    if not was_up:
        res = _cluster_script("stop", timeout=300)
        print(f"[slurm] cluster stop:\n{res.stdout}{res.stderr}")


def _sacct(env, *args) -> list[list[str]]:
    res = subprocess.run(["sacct", "-X", "-n", "-P", "-S", "2000-01-01T00:00:00", *args],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    return [line.split("|") for line in res.stdout.splitlines() if line.strip()]


def _queued(env, name: str) -> list[str]:
    res = subprocess.run(["squeue", "-h", "--name", name, "-o", "%i %T"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.split("\n")[:-1]


def _run_id(log: str) -> str:
    m = re.search(r"SLURM run ID: (\S+)", log)
    assert m, "no 'SLURM run ID' in Snakemake's output:\n" + log[-3000:]
    return m.group(1)


def _jobs(log: str) -> dict[int, dict]:
    """Snakemake jobid -> {rule, local, finished, slurm_ids} from a run's output."""
    jobs: dict[int, dict] = {}
    rule = local = None
    for line in log.splitlines():
        if m := re.match(r"^(local)?(?:rule|checkpoint) (\w+):$", line):
            local, rule = bool(m.group(1)), m.group(2)
        elif (m := re.match(r"^\s+jobid: (\d+)$", line)) and rule is not None:
            jobs.setdefault(int(m.group(1)), dict(rule=rule, local=local, finished=False, slurm_ids=[]))
            rule = None
        elif m := re.match(r"^Job (\d+) has been submitted with SLURM jobid (\d+)", line):
            jobs[int(m.group(1))]["slurm_ids"].append(m.group(2))
        elif m := re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)", line):
            jobs[int(m.group(1))]["finished"] = True
    return jobs


def _incomplete(wd: Path) -> set[Path]:
    """Outputs Snakemake has marked as incomplete (being made, or made by a killed job)."""
    marks = wd / ".snakemake" / "incomplete"
    out = set()
    for p in marks.rglob("*") if marks.exists() else ():
        if p.is_file():  # long names are split into folders whose names start with "@"
            b64 = "".join(part.lstrip("@") for part in p.relative_to(marks).parts)
            try:
                out.add(wd / base64.urlsafe_b64decode(b64).decode())
            except ValueError:
                pass
    return out


def _frame_hashes(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [h.decode() if isinstance(h, bytes) else str(h) for h in f["provenance/hash"][()]]


def _killpg(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _slurm_kill_and_resume(env, wd: Path, logs: Path) -> dict:
    t0 = time.time()
    with open(logs / "killed.log", "w") as out:
        proc = subprocess.Popen(SLURM_CMD, cwd=wd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    # Kill once the first model of iteration 0 is written: the reference stage is done,
    # the other member is being trained or waits for the CPUs.
    models = wd / "results" / "iter_000" / "models"
    deadline = time.time() + 900
    try:
        while not (models.exists() and any(models.glob("member_*.pt"))):
            if proc.poll() is not None:
                pytest.fail("the SLURM run ended before it was to be killed (rc "
                            f"{proc.returncode}):\n" + (logs / "killed.log").read_text()[-6000:])
            if time.time() > deadline:
                pytest.fail("no model after 900 s:\n" + (logs / "killed.log").read_text()[-6000:])
            time.sleep(0.5)
    finally:
        _killpg(proc)  # SIGKILL to Snakemake's process group (its sbatch/sacct calls too)
    t_killed = time.time() - t0
    killed_log = (logs / "killed.log").read_text()
    run1 = _run_id(killed_log)
    # Snakemake is gone but its SLURM jobs are not: cancel them (as a user would, by the
    # run ID that is every job's name) and wait until they have left the queue.
    active = _queued(env, run1)
    subprocess.run(["scancel", "--name", run1], env=env, check=True, timeout=60)
    deadline = time.time() + 120
    while _queued(env, run1):
        assert time.time() < deadline, "cancelled jobs still queued after 120 s"
        time.sleep(0.5)
    incomplete = _incomplete(wd)
    finished = {p: p.stat().st_mtime_ns for p in (wd / "results").rglob("*")
                if p.is_file() and p not in incomplete}
    # the killed Snakemake's lock stays behind: --unlock, then the same command again
    unlock = subprocess.run([*SLURM_CMD, "--unlock"], cwd=wd, capture_output=True, text=True,
                            env=env, timeout=300)
    assert unlock.returncode == 0, unlock.stdout + unlock.stderr
    t1 = time.time()
    res = subprocess.run(SLURM_CMD, cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True, timeout=RUN_TIMEOUT, env=env,
                         start_new_session=True)
    (logs / "resumed.log").write_text(res.stdout)
    print(f"\n[slurm] SLURM tiny campaign: killed after {t_killed:.0f} s with {len(active)} "
          f"SLURM job(s) queued or running and {len(finished)} files finished; the rerun to "
          f"the end took {time.time() - t1:.0f} s (total {time.time() - t0:.0f} s)")
    return dict(wd=wd, returncode=res.returncode, log=res.stdout, killed_log=killed_log,
                finished=finished, incomplete=incomplete, run_ids=(run1, _run_id(res.stdout)),
                active_at_kill=active)


@pytest.fixture(scope="session")
def runs(slurm_env, tmp_path_factory, campaign):
    """The tiny campaign twice: locally (--cores 2, the session's ``campaign`` of conftest.py,
    the reference) and under SLURM, killed in the middle, leftovers cancelled, then rerun to
    the end."""
    logs = tmp_path_factory.mktemp("slurm_logs")
    slurm = _slurm_kill_and_resume(slurm_env, tmp_path_factory.mktemp("slurm"), logs)
    return dict(slurm=slurm, local=dict(wd=campaign, returncode=0, log=""))


def _localrules() -> set[str]:
    rules = {"all"}
    for f in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        for m in re.finditer(r"^localrules:\s*([^\n#]+)", f.read_text(), re.M):
            rules.update(r.strip() for r in m.group(1).split(",") if r.strip())
    return rules


def test_slurm_run_completes_in_sacct_and_equals_local_run(runs, slurm_env):
    slurm_run, local = runs["slurm"], runs["local"]
    assert slurm_run["returncode"] == 0, slurm_run["log"][-8000:]
    assert local["returncode"] == 0, local["log"][-8000:]
    local_run = local["wd"]
    log = slurm_run["log"]
    wd = slurm_run["wd"]
    jobs = _jobs(log)
    assert jobs and all(j["finished"] for j in jobs.values()), \
        [j for j in jobs.values() if not j["finished"]]
    remote = {n: j for n, j in jobs.items() if not j["local"]}
    local = {j["rule"] for j in jobs.values() if j["local"]}
    assert local <= _localrules(), f"ran locally, not in SLURM: {local - _localrules()}"
    assert all(len(j["slurm_ids"]) == 1 for j in remote.values()), \
        {n: j for n, j in remote.items() if len(j["slurm_ids"]) != 1}
    m = re.findall(r"^(\d+) of (\d+) steps \(100%\) done", log, re.M)
    assert m and int(m[-1][0]) == len(jobs), (m, len(jobs))

    # sacct: exactly the jobs Snakemake submitted in this run, every one COMPLETED
    rows = _sacct(slurm_env, "--name", slurm_run["run_ids"][1],
                  "-o", "JobID,State,Partition,Account,AllocCPUS,ExitCode")
    by_id = {r[0]: r for r in rows}
    slurm_ids = {j["slurm_ids"][0]: j["rule"] for j in remote.values()}
    assert set(by_id) == set(slurm_ids), (sorted(by_id), sorted(slurm_ids))
    assert len(rows) == len(remote) > 0
    not_done = [r for r in rows if r[1] != "COMPLETED"]
    assert not not_done, not_done
    # ...where the profile sends them: training to the `gpu` partition, the rest to `cpu`;
    # account `lab`; one CPU for the one-core rules
    for jid, rule in slurm_ids.items():
        _, _, partition, account, cpus, _ = by_id[jid]
        assert partition == ("gpu" if rule == "train" else "cpu"), (rule, partition)
        assert account == "lab", (rule, account)
        if rule in ("reference_smd", "smd_batch", "label"):
            assert cpus == "1", (rule, cpus)
    rules_run = set(slurm_ids.values())
    assert {"train", "smd_batch"} <= rules_run, rules_run

    # same results as the local run with the same seeds
    ref = json.loads((local_run / "results" / "reference" / "barrier.json").read_text())
    got = json.loads((wd / "results" / "reference" / "barrier.json").read_text())
    assert json.dumps(got, sort_keys=True) == json.dumps(ref, sort_keys=True)   # NaN-safe equality
    for it in ("iter_000",):
        a = _frame_hashes(local_run / "results" / it / "merged.h5")
        b = _frame_hashes(wd / "results" / it / "merged.h5")
        assert a and b == a, f"{it}/merged.h5 frames differ: {len(a)} local, {len(b)} SLURM"
    assert (wd / "results" / "summary.csv").exists()


def test_slurm_kill_and_resume_keeps_finished_outputs(runs):
    slurm_run = runs["slurm"]
    assert slurm_run["returncode"] == 0, slurm_run["log"][-8000:]
    wd = slurm_run["wd"]
    finished = slurm_run["finished"]
    # killed in the middle: SLURM jobs were queued or running, the reference MD was done,
    # the campaign was not
    assert slurm_run["active_at_kill"], "no SLURM job was queued or running at the kill"
    assert (wd / "results" / "reference" / "md.h5") in finished
    assert (wd / "results" / "summary.csv") not in finished
    # nothing finished before the kill was made again...
    rewritten = [str(p.relative_to(wd)) for p, m in finished.items()
                 if not p.exists() or p.stat().st_mtime_ns != m]
    assert not rewritten, rewritten
    # ...and a reference-stage rule ran again only if its output was not finished at the kill
    # (light local rules such as reference_barrier run only when evaluate needs them)
    rerun_rules = {j["rule"] for j in _jobs(slurm_run["log"]).values()}
    outputs = {"reference_molecule": ["results/reference/molecule.xyz"],
               "reference_md": ["results/reference/md.h5"],
               "reference_smd": [f"results/reference/smd/replica_{r:02d}.h5" for r in range(2)],
               "reference_barrier": ["results/reference/barrier.json"],
               "initial_dataset": ["results/iter_000/dataset.h5"]}
    for rule in rerun_rules & set(outputs):
        done = [o for o in outputs[rule] if wd / o in finished]
        assert len(done) < len(outputs[rule]), f"{rule} ran again though {done} were finished"
    # ...and the campaign is complete
    assert (wd / "results" / "summary.csv").exists()
    assert not _incomplete(wd)
