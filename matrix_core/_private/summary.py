"""What ``matrix run`` reports at the end."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .resources import summary_lines


@dataclass
class RunSummary:
    workflow: str
    output: str
    rows: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    failed_not_retried: int = 0  # of ``skipped``: failed in an earlier run
    hops: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    roles: dict[str, Any] = field(default_factory=dict)
    resent: int = 0
    duplicate_rows: int = 0
    resent_from_checkpoint: int = 0
    continued: int = 0  # tasks an earlier, interrupted run left, continued from their checkpoint
    peak_in_flight: int = 0
    startup_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)  # the tool runtime's final stats, if one ran
    llm: dict[str, Any] = field(default_factory=dict)  # {"resources": {name: totals}, "roles": {role: totals}}
    llm_cache: dict[str, int] | None = None  # response cache hits and misses, when cache.enabled

    @property
    def tasks_per_s(self) -> float:
        return (self.done + self.failed) / self.wall_s if self.wall_s else 0.0

    @property
    def hops_per_s(self) -> float:
        return self.hops / self.wall_s if self.wall_s else 0.0

    def text(self) -> str:
        return (
            f"matrix run {self.workflow}: {self.done} done, {self.failed} failed, {self.skipped} already in output"
            + (f", {self.continued} continued from a checkpoint" if self.continued else "")
            + (f", {self.resent} re-sent after a failure ({self.resent_from_checkpoint} from a checkpoint)" if self.resent else "")
            + (f", {self.duplicate_rows} duplicate rows skipped" if self.duplicate_rows else "")
            + f" | {self.wall_s:.1f}s wall, {self.tasks_per_s:.1f} tasks/s, {self.hops_per_s:.0f} hops/s, "
            f"{self.tokens} tokens ({self.tokens / self.wall_s if self.wall_s else 0:.0f}/s) | output: {self.output}"
            + "".join(f"\n  {k}: {_fmt(v)}" for k, v in self.metrics.items())
            + summary_lines(self.llm)
            + (f"\n  llm cache: {self.llm_cache['hits']} hits, {self.llm_cache['misses']} misses" if self.llm_cache else "")
            + (f"\n  {self.failed_not_retried} task(s) in the output failed in an earlier run and were not retried "
               "(resume.retry_failed=true retries them)" if self.failed_not_retried else "")
        )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
