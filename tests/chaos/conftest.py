import os
import random
import signal
import threading
import time

import pytest
import ray


class Killer:
    """Kills random agent hosts of the running workflow (Ray restarts them), a few times."""

    def __init__(self, kills: int, every_s: float, seed: int = 0, prefix: str = "matrix-host-", after=lambda: True, sigkill: bool = False):
        self.kills, self.every_s, self.prefix, self.after, self.sigkill = kills, every_s, prefix, after, sigkill
        self.rng = random.Random(seed)
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.time() + 120
        while self.done < self.kills and not self._stop.is_set() and time.time() < deadline:
            names = [n for n in ray.util.list_named_actors() if n.startswith(self.prefix)]
            if not names or not self.after():
                time.sleep(0.1)
                continue
            if self._stop.wait(self.every_s):
                return
            names = [n for n in ray.util.list_named_actors() if n.startswith(self.prefix)]
            if names:
                try:
                    actor = ray.get_actor(self.rng.choice(sorted(names)))
                    if self.sigkill:  # the process dies as if the OOM killer took it
                        os.kill(ray.get(actor.stats.remote(), timeout=30)["pid"], signal.SIGKILL)
                    else:
                        ray.kill(actor, no_restart=False)
                    self.done += 1
                except ValueError:  # the run ended meanwhile
                    return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def killer():
    return Killer


def lines_in(path, at_least: int):
    """For ``Killer(after=...)``: start killing once the run has written this much."""

    def ready() -> bool:
        try:
            with open(path, "rb") as f:
                return sum(1 for _ in f) >= at_least
        except FileNotFoundError:
            return False

    return ready
