"""``matrix tau2 report PATH...``: average reward per domain and pass^k over trials."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import click

from .workflow import is_success, pass_hat_k


class ReportError(Exception):
    """An output file that cannot be read at all."""


def read_outputs(paths: Iterable[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Records of tau2 output files, and one warning per unreadable line."""
    records, warnings = [], []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise ReportError(f"{p}: no such file")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ReportError(f"{p}: cannot read ({exc})") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                warnings.append(f"{p} line {number}: not JSON ({exc}); skipped")
                continue
            if not isinstance(record, dict) or "task_id" not in record:
                warnings.append(f"{p} line {number}: not a task record; skipped")
                continue
            records.append(record)
    return records, warnings


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per domain: trajectories, failed, average reward, success rate, pass^k for k = 1..min trials."""
    by_domain: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    failed: dict[str, int] = defaultdict(int)
    terminations: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        domain = r.get("domain") or (r.get("payload") or {}).get("domain") or "?"
        if r.get("status") != "done" or r.get("reward") is None:
            failed[domain] += 1
            continue
        by_domain[domain][str(r.get("tau2_task_id") or r.get("row_key"))].append(float(r["reward"]))
        terminations[domain][r.get("termination_reason") or "?"] += 1
    out = {}
    for domain in sorted(set(by_domain) | set(failed)):
        tasks = by_domain.get(domain, {})
        rewards = [x for v in tasks.values() for x in v]
        trials = min((len(v) for v in tasks.values()), default=0)
        out[domain] = {
            "tasks": len(tasks),
            "trajectories": len(rewards),
            "failed": failed.get(domain, 0),
            "avg_reward": sum(rewards) / len(rewards) if rewards else None,
            "success_rate": sum(map(is_success, rewards)) / len(rewards) if rewards else None,
            "pass^k": {k: pass_hat_k(tasks, k) for k in range(1, trials + 1)},
            "terminations": dict(terminations.get(domain, {})),
        }
    return out


def format_report(summary: Mapping[str, Mapping[str, Any]]) -> str:
    lines = []
    for domain, s in summary.items():
        avg = "n/a" if s["avg_reward"] is None else f"{s['avg_reward']:.4f}"
        lines.append(f"{domain}: {s['tasks']} tasks, {s['trajectories']} trajectories, {s['failed']} failed, avg reward {avg}")
        for k, value in s["pass^k"].items():
            lines.append(f"  pass^{k}: {value:.4f}")
        if s["terminations"]:
            lines.append("  terminations: " + ", ".join(f"{k} {v}" for k, v in sorted(s["terminations"].items())))
    return "\n".join(lines) if lines else "no tau2 records"


@click.group("tau2", help="Tau2-Bench tools.")
def tau2_group() -> None:
    pass


@tau2_group.command("report")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def report_command(paths: tuple[str, ...], as_json: bool) -> None:
    """Average reward per domain and pass^k of tau2 outputs (jsonl files of `matrix run tau2`)."""
    try:
        records, warnings = read_outputs(paths)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    if not records:
        raise click.ClickException(f"no task records in {', '.join(paths)}")
    summary = summarize(records)
    click.echo(json.dumps(summary, indent=2) if as_json else format_report(summary))
