"""The ``numpy-retinanet`` command: one subcommand per job, each importing its module lazily."""

from __future__ import annotations

import argparse
import sys


def _cmd_figures(args) -> int:
    from numpy_retinanet.figures import make_figures

    for path in make_figures(args.out, only=args.only):
        print(f"wrote {path}")
    return 0


def _cmd_bench(args) -> int:
    from numpy_retinanet.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="numpy-retinanet",
        description="RetinaNet and the focal loss in plain NumPy.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    f = sub.add_parser("figures", help="regenerate the PNGs in figures/")
    f.add_argument("--out", default="figures", help="output folder (default: figures)")
    f.add_argument("--only", nargs="*", default=None, help="names of figures to make (default: all)")
    f.set_defaults(func=_cmd_figures)

    b = sub.add_parser("bench", help="benchmarks (never timed tests)")
    b.add_argument("what", nargs="?", default="conv", choices=["conv", "model"],
                   help="conv: 3x3 convs vs the matmul rate; model: forward/loss/backward of a preset")
    b.add_argument("--repeats", type=int, default=5, help="timed repeats, median reported")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:
        print(f"numpy-retinanet {args.command}: error: {e}", file=sys.stderr)
        return 2
