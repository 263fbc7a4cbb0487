"""Stand-ins for Slurm's sbatch, srun, sacct, squeue, scancel and scontrol (Slurm cannot run here).

``install(bin_dir, state_dir)`` links this file under those names. Every call is appended to
``state_dir/calls.jsonl``; jobs live in ``state_dir/jobs.json``. With ``FAKE_SLURM_RUN=1`` a
submitted job really runs on this machine: PENDING while ``state_dir/hold`` exists, then
RUNNING (its batch script under bash, in its own session, with the SLURM_* variables a job
sees), then COMPLETED / FAILED / CANCELLED; ``scontrol requeue`` sends it back to PENDING
once its script has exited, as Slurm does after a preemption.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

NAMES = ("sbatch", "srun", "sacct", "squeue", "scancel", "scontrol")


def install(bin_dir: Path, state_dir: Path) -> dict[str, str]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                        f"import slurm_standin\nslurm_standin.main({name!r}, sys.argv[1:])\n")
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM_DIR": str(state_dir)}


def _dir() -> Path:
    return Path(os.environ["FAKE_SLURM_DIR"])


@contextmanager
def _jobs():
    with open(_dir() / "jobs.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = _dir() / "jobs.json"
        jobs = json.loads(path.read_text()) if path.exists() else {}
        yield jobs
        tmp = path.with_name(f".jobs.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(jobs, indent=1))
        os.replace(tmp, path)  # readers never see half a file


def jobs() -> dict:
    path = _dir() / "jobs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def calls() -> list[dict]:
    path = _dir() / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _record(cmd: str, args: list[str], **extra) -> None:
    with open(_dir() / "calls.jsonl", "a") as f:
        f.write(json.dumps({"cmd": cmd, "args": args, **extra}) + "\n")


def _set(job_id: str, **fields) -> dict:
    with _jobs() as js:
        js[job_id].update(fields)
        if "state" in fields:
            js[job_id]["history"].append(fields["state"])
        return dict(js[job_id])


def _matching(ids: list[str]) -> list[str]:
    everything = jobs()
    return [j for j in everything if any(j == i or j.split("_")[0] == i for i in ids)]


def sbatch(args: list[str]) -> None:
    script = Path(args[-1])
    text = script.read_text()
    _record("sbatch", args, script=text)
    array = re.search(r"^#SBATCH --array=(\d+)-(\d+)", text, re.M)
    with _jobs() as js:
        number = str(100 + len({j.split("_")[0] for j in js}))
        ids = [f"{number}_{i}" for i in range(int(array.group(1)), int(array.group(2)) + 1)] if array else [number]
        for job_id in ids:
            js[job_id] = {"id": job_id, "state": "PENDING", "history": ["PENDING"], "script": str(script), "requeue": False, "requeues": 0}
    if os.environ.get("FAKE_SLURM_RUN") == "1":
        for job_id in ids:
            subprocess.Popen([sys.executable, __file__, "_run", job_id], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {number}")


def _run(job_id: str) -> None:
    """The scheduler for one job: hold, run the batch script, requeue or finish."""
    number, _, task = job_id.partition("_")
    while True:
        while (_dir() / "hold").exists() and jobs()[job_id]["state"] == "PENDING":
            time.sleep(0.2)
        job = jobs()[job_id]
        if job["state"] != "PENDING":  # cancelled while pending
            return
        env = {**os.environ, "SLURM_JOB_ID": str(int(number) * 1000 + int(task)) if task else number, "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
               "SLURM_NODEID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost",
               "SLURM_STANDIN_JOB": job_id}
        if task:
            env.update(SLURM_ARRAY_JOB_ID=number, SLURM_ARRAY_TASK_ID=task)
        proc = subprocess.Popen(["bash", job["script"]], env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _set(job_id, state="RUNNING", pgid=proc.pid)
        rc = proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Slurm ends what the job left behind
        except ProcessLookupError:
            pass
        job = jobs()[job_id]
        if job["requeue"]:
            _set(job_id, state="PENDING", requeue=False, requeues=job["requeues"] + 1)
            continue
        if job["state"] == "RUNNING":
            _set(job_id, state="COMPLETED" if rc == 0 else "FAILED")
        return


def srun(args: list[str]) -> None:
    """Runs the step in this process (exec), with --output/--error opened as Slurm would."""
    _record("srun", args)
    i, files = 0, {}
    while i < len(args) and args[i].startswith("-"):
        if args[i] in ("--output", "--error"):
            files[args[i]] = args[i + 1]
            i += 2
        else:
            i += 1
    env = os.environ
    names = {"%j": env.get("SLURM_JOB_ID", ""), "%A": env.get("SLURM_ARRAY_JOB_ID", ""), "%a": env.get("SLURM_ARRAY_TASK_ID", ""), "%t": "0"}
    for flag, fd in (("--output", 1), ("--error", 2)):
        if flag in files:
            path = files[flag]
            for k, v in names.items():
                path = path.replace(k, v)
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), fd)
    _set(env["SLURM_STANDIN_JOB"], step_pid=os.getpid())
    os.execvp(args[i], args[i:])


def sacct(args: list[str]) -> None:
    _record("sacct", args)
    ids = [args[k + 1] for k, a in enumerate(args) if a == "-j"]
    print("JobID|State|NodeList")
    everything = jobs()
    for job_id in _matching(ids):
        print(f"{job_id}|{everything[job_id]['state']}|localhost")


def squeue(args: list[str]) -> None:
    _record("squeue", args)
    print("JOBID STATE")
    for job_id, job in jobs().items():
        if job["state"] in ("PENDING", "RUNNING"):
            print(f"{job_id} {job['state']}")


def scancel(args: list[str]) -> None:
    _record("scancel", args)
    sig = None
    ids = []
    it = iter(args)
    for a in it:
        if a == "--signal":
            sig = next(it)
        elif a.startswith("--signal="):
            sig = a.split("=", 1)[1]
        else:
            ids.append(a)
    everything = jobs()
    for job_id in _matching(ids):
        job = everything[job_id]
        if sig:  # like `scancel --signal`: to the job's step, not the batch shell
            if job.get("step_pid") and job["state"] == "RUNNING":
                os.kill(job["step_pid"], getattr(signal, "SIG" + sig.removeprefix("SIG")))
            continue
        if job["state"] in ("PENDING", "RUNNING"):
            _set(job_id, state="CANCELLED")
            if job.get("pgid"):
                _end_group(job["pgid"])


def _end_group(pgid: int, grace_s: float = 30.0) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)
            time.sleep(0.2)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def scontrol(args: list[str]) -> None:
    _record("scontrol", args)
    if args[:1] == ["requeue"]:
        for job_id in _matching(args[1:]):
            _set(job_id, requeue=True)


def main(name: str, args: list[str]) -> None:
    {"sbatch": sbatch, "srun": srun, "sacct": sacct, "squeue": squeue, "scancel": scancel, "scontrol": scontrol}[name](args)


if __name__ == "__main__":
    _run(sys.argv[2])  # python slurm_standin.py _run JOB_ID: the scheduler of one job
