"""What the cluster tests share: the `matrix` command and bounded waits on observed state."""
import subprocess
import time

WAIT_S = 900  # generous: the machine is shared and loaded; every wait ends on what it observes


def matrix(*args, env, timeout=WAIT_S):
    return subprocess.run(["matrix", *args], capture_output=True, text=True, timeout=timeout, env=env)


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def wait_until(what, check, timeout=WAIT_S, every=0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
