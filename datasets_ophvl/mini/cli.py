"""The command: `python -m datasets_ophvl.mini OUT [--seed 0] [--size default|tiny] [--overwrite] [--quiet]`."""

import argparse
import sys

from .generate import generate_ophvl_mini
from .settings import SIZES


def _format_summary(summary: dict) -> str:
    lines = [f"OphVL-mini ({summary['size']}, seed {summary['seed']}) written to {summary['out_dir']}"]
    for subset in ("clips", "videos", "silent"):
        line = f"  {subset:<7} {summary[subset]['samples']:>5} samples in {summary[subset]['shards']} shards"
        if subset == "silent":
            line += f" ({summary['silent_clinic_b']} from clinic B)"
        lines.append(line)
    for key, folder in (("benchmark", "benchmark"), ("benchmark_shifted", "benchmark-shifted")):
        b = summary[key]
        lines.append(f"  {folder + '/':<19} {b['videos']} clinic-{b['clinic']} videos, {b['frames']} frames "
                     f"({b['annotated_frames']} annotated) at {b['fps']} fps")
    lines.append(f"  hidden ground truth {summary['ground_truth']}")
    lines.append(f"  took {summary['seconds']:.1f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    description = sys.modules[__package__].__doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m datasets_ophvl.mini", description=description)
    parser.add_argument("out", help="the folder to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=tuple(SIZES), default="default")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous OphVL-mini folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        summary = generate_ophvl_mini(args.out, seed=args.seed, size=args.size, overwrite=args.overwrite,
                                      progress=not args.quiet)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(_format_summary(summary))
    return 0
