"""Command line: python -m rope_viz {info,download,train} (eval and sweep arrive with their issues)."""
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


def cmd_train(args) -> int:
    """Train one bundled model with the shared recipe (see rope_viz.train.TrainConfig)."""
    from rope_viz import train

    overrides = {k: v for k, v in vars(args).items()
                 if k in train.TrainConfig.__dataclass_fields__ and v is not None}
    config = train.TrainConfig(**overrides)
    try:
        path = train.train(config, args.out, device=args.device, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rope_viz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="device and models").set_defaults(func=cmd_info)
    download = sub.add_parser("download", help="download hub weights into the Hugging Face cache")
    download.add_argument("names", nargs="+", metavar="NAME", help="hub model names (see `info`)")
    download.set_defaults(func=cmd_download)
    train_p = sub.add_parser("train", help="train a bundled model on procedural scenes")
    train_p.add_argument("--pos", required=True, choices=models.POS_KINDS)
    train_p.add_argument("--seed", type=int)
    train_p.add_argument("--epochs", type=int)
    train_p.add_argument("--train-scenes", dest="train_scenes", type=int)
    train_p.add_argument("--batch-size", dest="batch_size", type=int)
    train_p.add_argument("--lr", type=float)
    train_p.add_argument("--out", default=str(models.BUNDLED_DIR), help="output folder (default: assets/models)")
    train_p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    train_p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train_p.set_defaults(func=cmd_train)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
