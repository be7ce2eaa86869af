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
# Progress bars redraw ten times a second; in a log file (no terminal) one line every 30 s is enough.
if not sys.stderr.isatty():
    os.environ.setdefault("TQDM_MININTERVAL", "30")

from pipeline import config as config_module  # noqa: E402
from pipeline.errors import UserError  # noqa: E402


def _prepare(args, cfg):
    from pipeline import prepare

    prepare.run(cfg)


def _sad(args, cfg):
    from pipeline import sad

    sad.run(cfg)


def _plan(args, cfg):
    from pipeline import plan

    plan.run(cfg, as_json=args.json)


def _train(args, cfg):
    from pipeline import train

    train.run(cfg, args.variant)


def _forecast(args, cfg):
    from pipeline import forecast

    forecast.run(cfg, args.variant, steps=args.steps)


def _evaluate(args, cfg):
    from pipeline import evaluate

    if args.bounds:
        evaluate.run_bounds(cfg)
    else:
        evaluate.run(cfg, args.variant)


def _score(args, cfg):
    from pipeline import score

    score.run(args.reference_dir, args.estimates_dir, args.json, backend=cfg.eval.bsseval)


def _separate(args, cfg):
    from pipeline import paths
    from pipeline.separate import separate_files
    from pipeline.train import pick_device

    cfg.resolve(args.variant)  # an unknown variant is a config error, named as such
    checkpoint = paths.model_dir(args.variant) / "best.pt"
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no trained model for variant '{args.variant}'; run `dvc repro train@{args.variant}` first")
    separate_files(args.audio, checkpoint, args.out, cfg.eval, pick_device(cfg.train.device))


def _report(args, cfg):
    from pipeline import report

    report.run(cfg)


HANDLERS = {
    "prepare": _prepare,
    "sad": _sad,
    "plan": _plan,
    "train": _train,
    "forecast": _forecast,
    "evaluate": _evaluate,
    "score": _score,
    "separate": _separate,
    "report": _report,
}


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


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
    p = command("plan", "list the variants with their architecture and parameter count")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p = command("train", "train a variant's models (stage train@VARIANT)")
    p.add_argument("--variant", required=True, metavar="NAME")
    p = command("forecast", "predict a variant's training time and kWh from a few measured steps")
    p.add_argument("--variant", required=True, metavar="NAME")
    p.add_argument("--steps", type=_positive_int, default=20, metavar="K", help="training steps to measure (default 20)")
    p = command("evaluate", "separate and score the test split (stage evaluate@VARIANT)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", metavar="NAME")
    which.add_argument("--bounds", action="store_true", help="the mixture and oracle-IRM reference rows")
    p = command("score", "score an estimates folder in the MUSDB layout against references")
    p.add_argument("reference_dir", metavar="REFERENCE_DIR")
    p.add_argument("estimates_dir", metavar="ESTIMATES_DIR")
    p.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    p = command("separate", "separate audio files with a trained variant")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="wav or flac files, mono or stereo, any sample rate")
    p.add_argument("--variant", required=True, metavar="NAME")
    p.add_argument("--out", default="separated", metavar="DIR", help="output folder (default: separated)")
    command("report", "tables, figures and the energy ledger of the study")
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
