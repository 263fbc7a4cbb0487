"""`matrix cluster` on Slurm, against stand-in sbatch/srun/sacct/squeue/scancel/scontrol (no Slurm here).

The stand-ins record what they are given and run each job's real submitit batch script on
this machine, so the head and worker jobs start real raylets with the cluster's token.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import slurm_standin  # noqa: E402
from cli_helpers import WAIT_S, matrix, ok, wait_until  # noqa: E402



@pytest.fixture
def slurm(tmp_path):
    from matrix_core.testing import free_port

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(slurm_standin.install(tmp_path / "bin", tmp_path / "slurm"), MATRIX_HOME=str(tmp_path / "home"), FAKE_SLURM_RUN="1")
    os.environ["FAKE_SLURM_DIR"] = env["FAKE_SLURM_DIR"]  # this process reads the stand-ins' state too
    (tmp_path / "slurm" / "hold").touch()  # jobs stay PENDING until the test lets them run
    yield env, tmp_path / "slurm", free_port()
    os.environ.pop("FAKE_SLURM_DIR", None)


def test_without_sbatch_slurm_is_not_available_and_local_is_suggested(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "MATRIX_HOME": str(tmp_path / "home")}
    proc = subprocess.run([str(Path(sys.executable).parent / "matrix"), "cluster", "start", "c"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "matrix: error: Slurm is not available here (no `sbatch` on PATH); use --local to start the cluster on this machine"
    ]
    assert not (tmp_path / "home" / "clusters" / "c").exists()


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_slurm_standins_head_and_worker_array_follow_pending_running_requeue_stopped(slurm):
    env, state, port = slurm
    start = subprocess.Popen(
        ["matrix", "cluster", "start", "s1", "--workers", "2", "--port", str(port), "--no-dashboard",
         "--num-cpus", "1", "--head-num-cpus", "1", "--resources", '{"matrix_node_{i}": 1}',
         "--partition", "gpu", "--account", "lab", "--qos", "high", "--time", "120", "--gpus-per-node", "8",
         "--cpus-per-task", "12", "--mem", "64G", "--sbatch", "--constraint=h100", "--sbatch", "#SBATCH --exclusive"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # The head job is submitted and held PENDING; status says so.
        def submitted():
            assert start.poll() is None, start.communicate()
            return any(c["cmd"] == "sbatch" for c in slurm_standin.calls())

        wait_until("the head's sbatch", submitted)
        head_script = next(c for c in slurm_standin.calls() if c["cmd"] == "sbatch")["script"]
        for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --qos=high", "#SBATCH --time=120",
                     "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=12", "#SBATCH --mem=64G",
                     "#SBATCH --constraint=h100", "#SBATCH --exclusive", "#SBATCH --signal=USR2@120",
                     "#SBATCH --job-name=matrix-s1-head", "#SBATCH --nodes=1"):
            assert line in head_script.splitlines(), (line, head_script)
        assert "submitit.core._submit" in head_script and "srun" in head_script
        status = json.loads(ok(matrix("cluster", "status", "s1", "--json", env=env)))
        assert [j["state"] for j in status["jobs"]] == ["PENDING"] and status["live"] is None
        assert "token" not in status["cluster"]

        (state / "hold").unlink()  # the scheduler lets the jobs run
        out, err = start.communicate(timeout=WAIT_S)
        assert start.returncode == 0, out + err
        info = json.loads((Path(env["MATRIX_HOME"]) / "clusters" / "s1" / "cluster.json").read_text())
        assert info["token"] not in out + err
        head_id, worker_id = info["head"]["job_id"], info["workers"][0]["job_id"]
        assert [w["job_id"] for w in info["workers"]] == [f"{int(head_id) + 1}_0", f"{int(head_id) + 1}_1"]
        worker_script = [c for c in slurm_standin.calls() if c["cmd"] == "sbatch"][1]["script"]
        assert "#SBATCH --array=0-1%2" in worker_script and "#SBATCH --partition=gpu" in worker_script
        assert "#SBATCH --job-name=matrix-s1-worker" in worker_script

        # The jobs started the right Ray commands, with the token from the info file, not their arguments.
        head_log = Path(info["head"]["stdout"].replace("%j", head_id)).read_text()
        assert "ray.scripts.scripts start --block" in head_log and f"--head --port={port}" in head_log
        worker_log = Path(info["workers"][0]["stdout"].replace("%A_%a", worker_id)).read_text()
        assert f"--address={info['address']}" in worker_log and '--resources={"matrix_node_1": 1}' in worker_log
        assert info["token"] not in head_script + worker_script + head_log + worker_log
        live = json.loads(ok(matrix("cluster", "status", "s1", "--json", env=env)))
        assert [j["state"] for j in live["jobs"]] == ["RUNNING"] * 3
        assert sum(n["alive"] for n in live["live"]["nodes"]) == 3
        assert sorted(k for n in live["live"]["nodes"] for k in n["resources"]) == ["matrix_node_1", "matrix_node_2"]

        # Preemption: Slurm signals the worker's step; submitit checkpoints and requeues it; it rejoins.
        ok(subprocess.run(["scancel", "--signal", "USR2", worker_id], env=env, capture_output=True, text=True))
        wait_until("the worker to be requeued and run again", lambda: slurm_standin.jobs()[worker_id]["requeues"] == 1
                   and slurm_standin.jobs()[worker_id]["state"] == "RUNNING")
        assert slurm_standin.jobs()[worker_id]["history"] == ["PENDING", "RUNNING", "PENDING", "RUNNING"]
        assert ["requeue", worker_id] in [c["args"] for c in slurm_standin.calls() if c["cmd"] == "scontrol"]

        def rejoined():
            status = json.loads(ok(matrix("cluster", "status", "s1", "--json", env=env)))
            nodes = status["live"]["nodes"] if status["live"] else []
            return sum(n["alive"] for n in nodes) == 3 and sum(not n["alive"] for n in nodes) == 1

        wait_until("the requeued worker to rejoin the head", rejoined, every=3)
    finally:
        if start.poll() is None:
            start.kill()
        (state / "hold").unlink(missing_ok=True)
        proc = matrix("cluster", "stop", "s1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [c["args"] for c in slurm_standin.calls() if c["cmd"] == "scancel"][-1] == sorted([head_id, worker_id.split("_")[0]])
    wait_until("every job to be cancelled", lambda: all(j["state"] == "CANCELLED" for j in slurm_standin.jobs().values()))

    def group_gone(pgid):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until("the jobs' processes to end", lambda: all(group_gone(j["pgid"]) for j in slurm_standin.jobs().values()))
