"""Command line: python -m rope_viz {info,download} (train, eval and sweep arrive with their issues)."""
from __future__ import annotations

import argparse
import sys

from rope_viz import models


def cmd_info(args) -> int:
    """Print the device and every model with its source, kind and whether its weights are here."""
    print(f"device: {models.device_description()}")
    available = {s.name for s in models.available_models()}
    print(f"{'model':52} {'source':8} {'position':18} {'res':>4} {'classes':>7}  weights")
    for s in models.list_models():
        here = "here" if s.name in available else "not downloaded"
        print(f"{s.name:52} {s.source:8} {models.pos_label(s.pos):18} {s.train_res:>4} {s.num_classes:>7}  {here}")
    return 0


def cmd_download(args) -> int:
    """Fetch hub weights into the Hugging Face cache so the app can use them offline later."""
    for name in args.names:
        try:
            spec = models.get_spec(name)
            if spec.source != "hub":
                raise models.ModelLoadError(f"{name} is a {spec.source} model; only hub models are downloaded.")
            print(f"{name}: {models.hub_weights_file(name)}")
        except models.ModelLoadError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rope_viz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="device and models").set_defaults(func=cmd_info)
    download = sub.add_parser("download", help="download hub weights into the Hugging Face cache")
    download.add_argument("names", nargs="+", metavar="NAME", help="hub model names (see `info`)")
    download.set_defaults(func=cmd_download)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
