"""`python -m bench` (`make bench`): the application benchmark, then the bundle, catalog-scale,
licence and tracing benchmarks if their modules exist (each exposes `main(argv) -> int`)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import database, harness, report

OTHERS = ("bench.bundles", "bench.catalog_scale", "bench.licenses", "bench.tracing")
APPENDING = frozenset({"bench.bundles"})
"""The benchmarks among `OTHERS` that append their own section to the results file."""
RESULTS = Path(__file__).with_name("RESULTS.md")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short segments, one round")
    parser.add_argument("--seconds", type=float, help="length of one measured segment")
    parser.add_argument("--rounds", type=int, help="segments per path and scenario")
    parser.add_argument(
        "--scenarios", default="c1,c16,c64,open300", help="of c1, c16, c64, open300, open500"
    )
    parser.add_argument("--workers", default="1,2", help="gateway worker counts to measure")
    parser.add_argument(
        "--postgres",
        default=database.LOCAL_URL,
        metavar="URL",
        help="a PostgreSQL server the bench may create (and drop) its database on, for the "
        "durable-pg and gateway-pg paths; left out, saying so, if none answers",
    )
    parser.add_argument("--no-postgres", action="store_true", help="leave the PostgreSQL paths out")
    parser.add_argument(
        "--replicas", default="1,2", help="gateway replica counts to measure on PostgreSQL"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to append")
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument(
        "--only-applications",
        action="store_true",
        help="skip the bundle, catalog, licence and tracing benches",
    )
    parser.add_argument("--standards-dir", type=Path, default=Path("standards"))
    parser.add_argument(
        "--baseline", type=Path, help="another source tree whose gateway is measured too"
    )
    parser.add_argument("--note", default="", help="a sentence recorded with the figures")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmarks; returns the exit status."""
    args = _parser().parse_args(argv)
    options = harness.Options(
        seconds=args.seconds or (1.0 if args.quick else 4.0),
        rounds=args.rounds or (1 if args.quick else 2),
        scenarios=[s for s in args.scenarios.split(",") if s],
        workers=[int(n) for n in args.workers.split(",") if n],
        postgres=None if args.no_postgres else args.postgres,
        replicas=[int(n) for n in args.replicas.split(",") if n],
        warmup=0.3 if args.quick else 1.0,
        standards_dir=args.standards_dir,
        baseline=args.baseline,
    )
    unknown = set(options.scenarios) - set(harness.SCENARIOS)
    if unknown or not options.workers or options.workers[0] != 1:
        print(f"bench: unknown scenarios {sorted(unknown)} or workers not starting with 1")
        return 2
    if options.postgres is not None and (not options.replicas or options.replicas[0] != 1):
        print("bench: replicas must start with 1 (the ratios are to one replica)")
        return 2
    line = report.machine()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Machine: {line}", flush=True)
    results = asyncio.run(harness.run(options, lambda m: print(m, flush=True)))
    note = (
        f"{options.rounds} interleaved segment(s) of {options.seconds:g} s per path and "
        f"scenario{' (--quick)' if args.quick else ''}. {args.note}".strip()
    )
    text = report.render(results, machine_line=line, load_before=load_before, note=note)
    print(text, flush=True)
    if not args.no_append:
        report.append(args.results, text)
        print(f"appended to {args.results}")
    status = 0
    if not args.only_applications:
        for name in OTHERS:
            passed = ["--quick"] if args.quick else []
            if name in APPENDING:
                passed += ["--no-append"] if args.no_append else ["--results", str(args.results)]
            status |= _other(name, passed)
    return status


def _other(name: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        print(f"\n{name}: not present in this tree, skipped")
        return 0
    print(f"\n== {name} ==", flush=True)
    result: int = module.main(argv)
    return result


if __name__ == "__main__":
    sys.exit(main())
