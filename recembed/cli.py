"""The ``recembed`` command: parses arguments, then calls :mod:`recembed.train` and :mod:`recembed.demo`.

    recembed demo [--quick]
    recembed train CONFIG.toml [--data PATH] [--out DIR] [--epochs N] [--nproc N] [--resume]
                               [--tensorboard DIR] [--section.key VALUE ...]
    recembed evaluate CONFIG.toml --checkpoint PATH [--data PATH] [--section.key VALUE ...]
    recembed export --checkpoint PATH --out DIR [--format npy|word2vec|both]

``train`` and ``evaluate`` print the final test metrics as one JSON line, always the
last line of their output. ``train --nproc N`` trains over N ranks on this machine (tables
sharded, see :mod:`recembed.train.distributed_run`); under ``torchrun`` each process is a
rank and only rank 0 prints. Errors caused by input (config, data, checkpoint) print one
``recembed: error: ...`` line and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from recembed.errors import ConfigError, RecembedError

__all__ = ["main", "build_parser", "split_overrides"]


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``--section.key value`` (or ``--section.key=value``) overrides from the rest."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        token = argv[i]
        name = token[2:].split("=", 1)[0]
        if token.startswith("--") and "." in name:
            takes_next = "=" not in token and i + 1 < len(argv)
            overrides += argv[i:i + 2] if takes_next else [token]
            i += 2 if takes_next else 1
        else:
            rest.append(token)
            i += 1
    return rest, overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recembed", description="Train recommender embeddings end to end.")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="train DLRM and MF on synthetic data and show what they learned")
    demo.add_argument("--quick", action="store_true", help="tiny sizes (a few seconds), for smoke tests")
    demo.add_argument("--out", help="keep the runs' files here (default: a temporary folder)")
    demo.add_argument("--threads", type=int, default=0,
                      help="torch/numba threads (0 = cores - 1, at least 1, at most 4)")

    train = commands.add_parser("train", help="train the model a TOML config describes",
                                epilog="Any config key can be set as --section.key VALUE, e.g. --train.epochs 3.")
    train.add_argument("config", help="run config (TOML)")
    train.add_argument("--data", help="data file (sets data.path)")
    train.add_argument("--out", help="output folder (sets train.out_dir)")
    train.add_argument("--epochs", help="number of epochs (sets train.epochs)")
    train.add_argument("--seed", help="random seed (sets train.seed)")
    train.add_argument("--nproc", help="train over N gloo ranks on this machine, tables sharded (sets train.nproc; "
                                       "under torchrun the ranks are torchrun's)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output folder")
    train.add_argument("--tensorboard", metavar="DIR", help="log scalars and the embedding projector to DIR")

    evaluate = commands.add_parser("evaluate", help="test metrics of a checkpoint on the config's data")
    evaluate.add_argument("config", help="the run config the checkpoint was trained with")
    evaluate.add_argument("--checkpoint", required=True, help="model.pt, best.pt or an epoch checkpoint")
    evaluate.add_argument("--data", help="data file (sets data.path)")

    export = commands.add_parser("export", help="write a checkpoint's embedding tables (.npy, id map, word2vec)")
    export.add_argument("--checkpoint", required=True, help="model.pt or an epoch checkpoint of a run")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--format", default="both", choices=["npy", "word2vec", "both"])
    return parser


def _load_config(args: argparse.Namespace, override_args: list[str]):
    from recembed.train.config import load_config, parse_override_args

    pairs = []
    for flag, key in (("data", "data.path"), ("out", "train.out_dir"), ("epochs", "train.epochs"),
                      ("seed", "train.seed"), ("nproc", "train.nproc")):
        value = getattr(args, flag, None)
        if value is not None:
            pairs.append((key, value))
    return load_config(args.config, pairs + parse_override_args(override_args))


def _run(args: argparse.Namespace, override_args: list[str]) -> int:
    if args.command not in ("train", "evaluate") and override_args:
        raise ConfigError(f"'recembed {args.command}' takes no --section.key overrides (got {override_args[0]})")
    if args.command == "demo":
        from recembed.demo import run_demo

        run_demo(quick=args.quick, out_dir=args.out, threads=args.threads)
        return 0
    if args.command == "export":
        from recembed.train.export import export_embeddings

        for table in export_embeddings(args.checkpoint, args.out, format=args.format):
            print(f"{table.name}: {table.rows} x {table.dim} -> {', '.join(table.files)}")
        print(f"wrote {args.out}")
        return 0
    config = _load_config(args, override_args)
    if args.command == "evaluate":
        from recembed.train.loop import evaluate_checkpoint

        print(json.dumps(evaluate_checkpoint(config, args.checkpoint)))
        return 0
    from recembed.train.distributed_run import fit_run

    result = fit_run(config, tensorboard_dir=args.tensorboard, resume=args.resume)
    if result is None:
        return 0  # a torchrun rank other than 0: rank 0 reports
    print(f"wrote {result.out_dir} (model.pt, metrics.json, history.json, curves.png)")
    print(json.dumps({**result.metrics, "best_epoch": result.best_epoch}))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, override_args = split_overrides(argv)
    args = build_parser().parse_args(rest)
    try:
        return _run(args, override_args)
    except (RecembedError, FileNotFoundError) as exc:
        if args.traceback:
            raise
        print(f"recembed: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
