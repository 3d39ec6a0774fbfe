"""``python -m benchmarks [NAME ...]``: run the benchmarks and print their tables.

NAME is one of latency, throughput, scale, start (default: these four, about 5 minutes),
breakdown (a diagnostic: where a breach's time goes), or soak (``benchmarks/soak.py``, run on
its own with its own options). Tables go to stdout (Markdown), progress to stderr; ``--readme``
also writes the tables into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .common import MODES, OPTIONAL_MODES, Options
from .harness import UVLOOP_ENV, machine_line

README = Path(__file__).resolve().parent / "README.md"


def _scenarios() -> dict[str, Callable[[Options], str]]:
    from . import breakdown, latency, scale, start, throughput

    return {
        "latency": latency.run,
        "throughput": throughput.run,
        "scale": scale.run,
        "start": start.run,
        "breakdown": breakdown.run,
    }


DEFAULT = ("latency", "throughput", "scale", "start")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="latency, throughput, scale, start (the default), breakdown",
    )
    parser.add_argument(
        "--breaches",
        type=int,
        default=200,
        help="latency: breaches per system (paced, ~0.5 s each)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="latency: alternating rounds")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="systems to measure, comma-separated (default "
        + ",".join(MODES)
        + "; also "
        + ", ".join(OPTIONAL_MODES)
        + "; streamed: headless with 3 attached stream clients, latency only)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="profile the system under test with pyinstrument during the measurement",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    parser.add_argument(
        "--uvloop", action="store_true", help="run every system under test on uvloop's loop"
    )
    parser.add_argument("--readme", action="store_true", help="write the tables into README.md")
    return parser


def main(argv: list[str]) -> int:
    if argv and argv[0] == "soak":
        # Another engineer's benchmark, with its own options.
        sys.argv = ["benchmarks.soak", *argv[1:]]
        runpy.run_module("benchmarks.soak", run_name="__main__", alter_sys=True)
        return 0
    args = _parser().parse_args(argv)
    scenarios = _scenarios()
    names = args.names or list(DEFAULT)
    unknown = [name for name in names if name not in scenarios]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(scenarios)}")
        return 2
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if args.uvloop:
        os.environ[UVLOOP_ENV] = "1"
    opts = Options(
        breaches=40 if args.quick else args.breaches,
        rounds=args.rounds,
        warmup=20 if args.quick else 50,
        quick=args.quick,
        keep=args.keep,
        profile_dir=args.profile,
        modes=tuple(m for m in MODES + OPTIONAL_MODES if m in modes),
    )
    print(f"riskman benchmarks: {', '.join(names)}\n_{machine_line()}_\n", flush=True)
    began = time.monotonic()
    outputs: dict[str, str] = {}
    for name in names:
        output = scenarios[name](opts)
        outputs[name] = output
        print(output, flush=True)
    print(f"_all done in {time.monotonic() - began:.0f} s_")
    if args.readme:
        for name, output in outputs.items():
            _write_readme(name, output)
    return 0


def _write_readme(name: str, output: str) -> None:
    """Replace the block between `<!-- results:NAME -->` and `<!-- /results:NAME -->`."""
    text = README.read_text()
    pattern = re.compile(
        rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", flags=re.DOTALL
    )
    if not pattern.search(text):
        print(f"README.md has no results block for {name}; not written", file=sys.stderr)
        return
    README.write_text(pattern.sub(lambda m: m.group(1) + output + m.group(2), text))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
