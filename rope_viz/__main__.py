"""Command line: python -m rope_viz {info,download,train,eval,sweep}."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from rope_viz import models
from rope_viz.measure import distributed, positions, sweep
from rope_viz.training import cards, train
from rope_viz.errors import RopeVizError

USER_ERROR = 2  # exit status for bad input: one sentence on stderr, no traceback


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one sentence (and points at --help), exit status 2."""

    def error(self, message: str):
        self.exit(USER_ERROR, f"error: {message[0].upper() + message[1:]}; see `{self.prog} --help`.\n")


def fail(err: Exception | str) -> int:
    """Print one sentence for the user and return the bad-input exit status."""
    print(f"error: {err}", file=sys.stderr)
    return USER_ERROR


LOCAL_HELP = ("a local checkpoint (.safetensors, .pth, .pt, .bin) for a timm architecture, "
              "e.g. ckpt.pth@vit_small_patch16_rope_mixed_224, or a Hugging Face model directory (its vision tower)")


def cmd_info(args) -> int:
    """Print the device and every model: source, family, patch, resolution, prefix tokens, mean/std source."""
    try:
        for argument in args.add or []:
            models.resolve_name(argument)
    except RopeVizError as err:
        return fail(err)
    print(f"device: {models.device_description()}, {sweep.memory_description(models.default_device())}")
    available = {s.name for s in models.available_models()}
    print(f"{'model':48} {'source':7} {'family':26} {'patch':>5} {'res':>4} {'prefix tokens':17} "
          f"{'classes':>7}  {'mean/std from':22} weights")
    for s in models.list_models():
        here = "here" if s.name in available else "not downloaded"
        print(f"{s.name:48} {s.source:7} {s.family_label:26} {s.patch_size:>5} {s.train_res:>4} {s.prefix_label:17} "
              f"{s.num_classes or 'none':>7}  {s.mean_std_source:22} {here}")
    return 0


def cmd_download(args) -> int:
    """Fetch hub weights into the Hugging Face cache so the app can use them offline later."""
    for name in args.names:
        try:
            spec = models.get_spec(name)
            if spec.source != "hub":
                raise models.ModelLoadError(f"{name} is a {spec.source} model; only hub models are downloaded.")
            print(f"{name}: {models.hub_weights_file(name)}")
        except RopeVizError as err:
            return fail(err)
    return 0


def cmd_train(args) -> int:
    """Train one bundled model with the shared recipe (see rope_viz.train.TrainConfig)."""
    overrides = {k: v for k, v in vars(args).items()
                 if k in train.TrainConfig.__dataclass_fields__ and v is not None}
    try:
        config = train.TrainConfig(**overrides)
        path = train.train(config, args.out, device=args.device, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    except RopeVizError as err:
        return fail(err)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def _progress_bar(total: int, desc: str, disable: bool = False):
    bar = tqdm(total=total, desc=desc, unit="cell", disable=disable)

    def update(done: int, total: int, row: dict) -> None:
        bar.set_postfix_str(f"{row['model']} {row['resolution']} px {row['mode']} {row.get('method', '')}: "
                            f"top-1 {row['top1']:.1f}%")
        bar.update(done - bar.n)
    return bar, update


def cmd_eval(args) -> int:
    """Top-1 of one model on held-out scenes at every card resolution, in both modes; --write puts it in the card."""
    try:
        spec = models.get_spec(models.resolve_name(args.model))
        sweep.check_request([spec.name], args.resolutions, "shapes", args.limit)
        bar, update = _progress_bar(len(args.resolutions) * len(cards.CARD_MODES), f"eval {spec.name}")
        with bar:
            table = cards.evaluate_for_card(spec.name, args.resolutions, args.limit, args.device, update)
    except RopeVizError as err:
        return fail(err)
    print(cards.format_table(table))
    if args.write:
        if spec.source != "bundled":
            return fail(f"Only bundled models have cards; {spec.name} is {spec.source}.")
        cards.write_card_eval(spec, table)
        print(f"wrote the table into {spec.path.replace('.safetensors', '.json')}")
    return 0


def method_argument(text: str) -> str:
    """A --method value: a method name or 'drop_low:K' / 'drop_high:K' (argparse's one-line error otherwise)."""
    try:
        positions.split_method(text)
    except RopeVizError as err:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} ({err})") from err
    return text


def cmd_sweep(args) -> int:
    """Accuracy per model x resolution; writes a CSV (and prints it).

    Under torchrun every process evaluates its shard of each cell; only rank 0 prints and writes.
    """
    shard, device = distributed.init_from_env(args.device)
    try:
        names = [models.resolve_name(m) for m in args.models]  # PATH@ARCH: registered (and checked) here
        sweep.check_request(names, args.resolutions, args.data, args.limit, args.batch_size)
        methods = args.method or [args.position]
        bar, update = _progress_bar(len(names) * len(methods) * len(args.resolutions), "sweep",
                                    disable=not shard.is_main)
        with bar:
            rows = sweep.accuracy_sweep(names, args.resolutions, dataset=args.data, limit=args.limit,
                                        device=device, position=args.position, methods=methods,
                                        batch_size=args.batch_size, progress=update, shard=shard)
    except RopeVizError as err:
        return fail(err) if shard.is_main else USER_ERROR
    finally:
        distributed.shutdown()
    if not shard.is_main:
        return 0
    for row in rows:
        if row["requested"] != row["resolution"]:
            print(f"note: {row['requested']} px is not a multiple of {row['model']}'s patch size; "
                  f"evaluated at {row['resolution']} px.", file=sys.stderr)
    text = sweep.rows_to_csv(rows)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {len(rows)} rows to {args.out}")
    print(text, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m rope_viz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="device and models")
    info.add_argument("--add", nargs="+", metavar="PATH@ARCH|DIR", help=LOCAL_HELP)
    info.set_defaults(func=cmd_info)
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
    train_p.add_argument("--ape-init", dest="ape_init", choices=("sincos", "random"),
                         help="start of the APE table (default: the recipe's, random: timm's truncated normal)")
    train_p.add_argument("--min-scale", dest="min_scale", type=float,
                         help="scale augmentation: smallest object scale of a training view (default: the recipe's)")
    train_p.add_argument("--max-scale", dest="max_scale", type=float,
                         help="scale augmentation: largest object scale of a training view (default: the recipe's)")
    train_p.add_argument("--out", default=str(models.BUNDLED_DIR), help="output folder (default: assets/models)")
    train_p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    train_p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train_p.set_defaults(func=cmd_train)
    eval_p = sub.add_parser("eval", help="a bundled model's top-1 on held-out scenes (the model card's table)")
    eval_p.add_argument("--model", required=True, help="model name (see `info`) or PATH@ARCH, " + LOCAL_HELP)
    eval_p.add_argument("--resolutions", type=int, nargs="+", default=[32, 48, 64, 96, 128, 192])
    eval_p.add_argument("--limit", type=int, default=2000, help="held-out scenes per cell (default 2000)")
    eval_p.add_argument("--device", default=None)
    eval_p.add_argument("--write", action="store_true", help="store the table in the model card")
    eval_p.set_defaults(func=cmd_eval)
    sweep_p = sub.add_parser("sweep", help="accuracy per model and resolution, as CSV (torchrun: sharded)",
                             description="Also runs under torchrun (--nproc_per_node N -m rope_viz sweep ...): "
                                         "each process evaluates a block of every cell, counts are all-reduced, "
                                         "rank 0 writes the CSV.")
    sweep_p.add_argument("--models", nargs="+", required=True, metavar="NAME",
                         help="model names (see `info`) or PATH@ARCH, " + LOCAL_HELP)
    sweep_p.add_argument("--resolutions", type=int, nargs="+", required=True, metavar="PX")
    sweep_p.add_argument("--data", default="shapes", help="shapes | shapes:canvas | PATH to an ImageFolder")
    sweep_p.add_argument("--limit", type=int, default=2000, help="images per cell (default 2000)")
    sweep_p.add_argument("--position", default=positions.DEFAULT_METHOD, choices=sweep.POSITION_MODES,
                         help="RoPE positions beyond the training grid (default: native, as the model computes "
                              "them; APE is always resampled)")
    sweep_p.add_argument("--method", nargs="+", type=method_argument, metavar="METHOD",
                         help="position methods, one curve each: " + ", ".join(positions.METHODS)
                              + "; drop_low:K / drop_high:K switch rotation off for the K lowest / highest "
                                "frequency pairs (default: --position's; formulas in rope_viz.positions)")
    sweep_p.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    sweep_p.add_argument("--device", default=None)
    sweep_p.add_argument("--out", default=None, help="CSV file to write")
    sweep_p.set_defaults(func=cmd_sweep)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
