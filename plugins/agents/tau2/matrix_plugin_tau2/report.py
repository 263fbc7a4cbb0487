"""``matrix tau2 report PATH...``: average reward per domain and pass^k over trials."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import click
from matrix_core import ConfigError

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
    versions: dict[str, set[str]] = defaultdict(set)
    for r in records:
        domain = r.get("domain") or (r.get("payload") or {}).get("domain") or "?"
        versions[domain].add(str(r.get("data_version") or "unrecorded"))
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
            "data_version": ", ".join(sorted(versions.get(domain, ()))),
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
        lines.append(f"{domain} (data {s.get('data_version') or 'unrecorded'}): {s['tasks']} tasks, {s['trajectories']} trajectories, {s['failed']} failed, avg reward {avg}")
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


@tau2_group.command("score")
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="write the re-scored results here (tau2's format); several inputs: one file per input, named after it")
@click.option("--data-version", default=None, help="the behaviour to score with (default: the shipped version the file's tasks are)")
@click.option("--action-reward", type=click.Choice(["all", "mean"]), default=None, help="override the ACTION component's rule")
@click.option("--validate-args", is_flag=True, default=None, help="validate and coerce tool arguments (tau2 does not)")
@click.option("--lenient-lookups", is_flag=True, default=None, help="lookups ignore blanks, case, accents; phone numbers by digits (tau2 does not)")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def score_command(paths: tuple[str, ...], output: str | None, data_version: str | None, action_reward: str | None,
                  validate_args: bool | None, lenient_lookups: bool | None, as_json: bool) -> None:
    """Score tau2 results files (tau2's own format) as tau2 scores them: reward and reward info per simulation."""
    from .tau2_format import read_results, score_results

    overrides = {"action_reward": action_reward, "validate_args": validate_args, "lenient_lookups": lenient_lookups}
    summary: dict[str, Any] = {}
    for path in paths:
        results = read_results(path)
        scored, part = score_results(results, data_version, overrides)
        for domain, s in part.items():
            s["file"] = path
            summary[f"{domain}:{path}" if len(paths) > 1 else domain] = s
        if output:
            target = Path(output) if len(paths) == 1 else Path(output) / f"{Path(path).stem}.scored.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(scored, indent=2), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, s in summary.items():
        avg = "n/a" if s["avg_reward"] is None else f"{s['avg_reward']:.4f}"
        note = "" if s["tasks_match_data_version"] else " (the file's tasks are not this version's; scored against the file's tasks)"
        click.echo(f"{key}: {s['simulations']} simulations, avg reward {avg}, data {s['data_version']}{note}, "
                   f"{s['with_replay_warnings']} with replay warnings")
        if s["unknown_task_ids"]:
            click.echo(f"  warning: simulations of tasks the file does not define, not scored: {', '.join(s['unknown_task_ids'][:10])}", err=True)


@tau2_group.command("export")
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="tau2 results file to write (several domains: one file each, suffixed _DOMAIN)")
def export_command(paths: tuple[str, ...], output: str) -> None:
    """Write `matrix run tau2` outputs (jsonl) as tau2 results files, for tau2's own tools."""
    from .tau2_format import export_records

    try:
        records, warnings = read_outputs(paths)
    except ReportError as exc:
        raise ConfigError(str(exc)) from None
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    written = export_records(records, output)
    if not written:
        raise ConfigError(f"no finished tau2 records in {', '.join(paths)}")
    for domain, path in written.items():
        click.echo(f"{domain}: {path}")
