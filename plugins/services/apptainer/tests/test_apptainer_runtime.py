"""runtime=apptainer without apptainer (it cannot be installed here): the commands it builds,
its errors, and its lifecycle against a recording fake ``apptainer`` that runs commands on
the host. Nothing here is contained; the containment itself needs a real apptainer."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from matrix_core import ConfigError, MatrixError
from matrix_plugin_apptainer import ApptainerRuntime

FAKE = textwrap.dedent(f"""\
    #!{sys.executable}
    # A stand-in for apptainer: logs each call; `exec instance://NAME CMD` runs CMD on the host
    # in the folder that `instance start` bound at /work for NAME.
    import json, os, sys
    log = os.environ["FAKE_APPTAINER_LOG"]
    args = sys.argv[1:]
    with open(log, "a") as f:
        f.write(json.dumps(args) + "\\n")
    if args[:2] == ["instance", "start"] and "fail-start" in args[-2]:
        sys.exit("FATAL: could not open image " + args[-2])
    if args[0] == "exec":
        target = next(i for i, a in enumerate(args) if a.startswith("instance://"))
        name = args[target][len("instance://"):]
        starts = [json.loads(l) for l in open(log) if l.startswith('["instance", "start"')]
        start = [s for s in starts if s[-1] == name][-1]
        work = next(b.split(":")[0] for b in start if b.endswith(":/work"))
        pwd = args[args.index("--pwd") + 1]
        env = dict(a.split("=", 1) for i, a in enumerate(args[:target]) if i and args[i - 1] == "--env")
        os.chdir(work + pwd[len("/work"):])
        os.execvpe(args[target + 1], args[target + 1:], {{**os.environ, **env}})
""")


@pytest.fixture
def fake_apptainer(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "apptainer"
    exe.write_text(FAKE)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APPTAINER_LOG", str(log))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def runtime(tmp_path, **cfg):
    image = tmp_path / "python.sif"
    image.write_text("not really an image")
    return ApptainerRuntime({"image": str(image), "temp_root": str(tmp_path / "root"), **cfg})


def test_commands_it_builds(tmp_path):
    rt = runtime(tmp_path, nv=True, binds=["/data:/data:ro", "/models:/models"], env={"TOKENIZERS_PARALLELISM": "false"})
    rt.binary = "/usr/bin/apptainer"
    start = rt.start_argv("matrix-x-1", Path("/tmp/w"))
    assert start == ["/usr/bin/apptainer", "instance", "start", "--contain", "--cleanenv", "--writable-tmpfs", "--net", "--network", "none",
                     "--nv", "--bind", "/tmp/w:/work", "--bind", "/data:/data:ro", "--bind", "/models:/models", str(tmp_path / "python.sif"), "matrix-x-1"]
    run = rt.exec_argv("matrix-x-1", ["python3", "main.py"], {"SEED": "1"}, "/work/sub", 9.5)
    assert run[: run.index("--")] == ["prlimit", f"--as={2048 << 20}", f"--fsize={256 << 20}", "--nofile=1024", "--cpu=11", "--core=0"]
    assert run[run.index("--") + 1:] == ["/usr/bin/apptainer", "exec", "--pwd", "/work/sub", "--cleanenv", "--env", "HOME=/work",
                                         "--env", "TOKENIZERS_PARALLELISM=false", "--env", "SEED=1", "instance://matrix-x-1", "python3", "main.py"]
    assert rt.stop_argv("matrix-x-1") == ["/usr/bin/apptainer", "instance", "stop", "--signal", "SIGKILL", "matrix-x-1"]
    plain = runtime(tmp_path, nv=False, network="host", contain=False, writable_tmpfs=False)
    assert plain.start_argv("n", Path("/w")) == ["apptainer", "instance", "start", "--bind", "/w:/work", str(tmp_path / "python.sif"), "n"]
    assert rt.instance_name("ab/c d").startswith("matrix-") and "/" not in rt.instance_name("ab/c d")


def test_missing_apptainer_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither apptainer nor singularity
    with pytest.raises(MatrixError, match="needs apptainer or singularity on PATH, and it is not installed"):
        asyncio.run(runtime(tmp_path).start())


def test_bad_settings(tmp_path, fake_apptainer):
    with pytest.raises(ConfigError, match="runtime.image is not set"):
        asyncio.run(ApptainerRuntime({"temp_root": str(tmp_path)}).start())
    with pytest.raises(ConfigError, match="is not a file"):
        asyncio.run(ApptainerRuntime({"image": str(tmp_path / "missing.sif"), "temp_root": str(tmp_path)}).start())
    for bind, why in [("/data", "HOST:CONTAINER"), ("/data:rel", "HOST:CONTAINER"), ("/x:/work/y", "binds over /work"), ("/a:/b:rx", "HOST:CONTAINER")]:
        with pytest.raises(ConfigError, match=why):
            runtime(tmp_path, binds=[bind])


def test_lifecycle_with_a_recording_fake_apptainer(tmp_path, fake_apptainer):
    rt = runtime(tmp_path, warm_pool=0)

    async def scenario():
        await rt.start()
        info = await rt.create("s1")
        name = info["instance"]
        await rt.write_file("s1", "sub/in.txt", b"42")
        r = await rt.exec("s1", "cat in.txt; echo \" $HOME $EXTRA\"", cwd="sub", env={"EXTRA": "yes"})
        assert r.ok and r.stdout == "42 /work yes\n"
        r = await rt.exec("s1", ["sh", "-c", "echo state > kept.txt"])
        assert (await rt.read_file("s1", "kept.txt")) == b"state\n"
        r = await rt.exec("s1", "sleep 30", timeout_s=1)
        assert r.killed == "timeout"
        assert (await rt.read_file("s1", "kept.txt")) == b"state\n"  # the restarted instance has the same work dir
        await rt.close()
        (tmp_path / "fail-start.sif").write_text("x")
        broken = ApptainerRuntime({**rt.config, "image": str(tmp_path / "fail-start.sif")})
        await broken.start()
        with pytest.raises(MatrixError, match="instance start .* failed: FATAL: could not open image"):
            await broken.create("s2")
        assert broken.census() == {"processes": 0, "work_dirs": 0}  # a failed start leaves no work dir
        await broken.close()
        return name

    name = asyncio.run(scenario())
    calls = fake_apptainer()
    verbs = [c[0] if c[0] == "exec" else " ".join(c[:2]) for c in calls if c[-1] == name or f"instance://{name}" in c]
    assert verbs == ["instance start", "exec", "exec", "exec", "instance stop", "instance start", "instance stop"]
    assert rt.census() == {"processes": 0, "work_dirs": 0} and not rt.root.mine.exists()
