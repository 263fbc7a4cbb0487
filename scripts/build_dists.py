"""Build every package's wheel and sdist (the core and each plugin) into one folder.

    python scripts/build_dists.py [--out dist] [--isolation] [--only matrix-core matrix-plugin-tau2 ...]

Then a user installs one plugin with what it needs and nothing else:
``pip install --find-links dist matrix-plugin-tau2``. Without ``--isolation`` the build
uses this environment's setuptools (>= 70.1: no separate ``wheel`` package), which is much
faster than a fresh build environment per package.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def packages(only: list[str] | None = None) -> list[Path]:
    """The core and every plugin; ``only``: distribution names to keep (``matrix-plugin-tau2``)."""
    found = [ROOT, *sorted(p.parent for p in ROOT.glob("plugins/*/*/pyproject.toml"))]
    if only is None:
        return found
    names = {"matrix-core" if p == ROOT else f"matrix-plugin-{p.name}": p for p in found}
    unknown = sorted(set(only) - set(names))
    if unknown:
        sys.exit(f"build_dists: unknown package(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return [names[n] for n in only]


def build(out: Path, isolation: bool = False, only: list[str] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for package in packages(only):
        argv = [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(package)]
        if not isolation:
            argv.insert(3, "--no-isolation")
        scratch = package / "build"  # setuptools' copy of the sources: removed unless it was there
        had_scratch = scratch.exists()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if not had_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        if proc.returncode != 0:
            sys.exit(
                f"build_dists: {package.relative_to(ROOT.parent)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        print(f"built {package.relative_to(ROOT) if package != ROOT else 'matrix-core'}")
    return sorted(out.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--isolation", action="store_true", help="build each package in a fresh environment")
    parser.add_argument("--only", nargs="+", metavar="DIST", help="build these distributions only")
    args = parser.parse_args()
    files = build(args.out, args.isolation, args.only)
    print(f"{len(files)} files in {args.out}")


if __name__ == "__main__":
    main()
