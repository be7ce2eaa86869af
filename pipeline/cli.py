"""The `sepcost` command: one subcommand per stage and per user-facing tool.

`main(argv)` takes the argument list, so tests call the CLI in-process. Stage modules are imported
inside their handlers: `sepcost --help` and config errors answer without loading torch.
"""
from __future__ import annotations

import argparse
import os
import sys

# CodeCarbon logs even at level warning unless this is set before it is imported.
os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")

from pipeline import config as config_module  # noqa: E402
from pipeline.errors import UserError  # noqa: E402


def _prepare(args, cfg):
    from pipeline import prepare

    prepare.run(cfg)


def _sad(args, cfg):
    from pipeline import sad

    sad.run(cfg)


HANDLERS = {
    "prepare": _prepare,
    "sad": _sad,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sepcost",
        description="Rebuild a music-source-separation study and price every result in kWh.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--params", default=str(config_module.DEFAULT_PARAMS), metavar="FILE",
                       help="params file (default: params.yaml)")
        return p

    command("prepare", "write the synthetic data set, or check a real MUSDB18(-HQ) folder, and its manifest")
    command("sad", "source activity detection over the training tracks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_module.load(args.params)
        HANDLERS[args.command](args, cfg)
    except UserError as err:
        print(f"sepcost {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"sepcost {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
