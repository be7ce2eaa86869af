"""The `sepcost` command: one subcommand per stage and per user-facing tool.

`main(argv)` takes the argument list, so tests call the CLI in-process; `entry()` is the installed
command (and `python -m pipeline.cli`), which ends a stopped stage's process at once. Each command
runs the module of `pipeline.stages` named in `STAGES`, imported in its handler: `sepcost --help`
and config errors answer without loading torch, and a test derives from `STAGES` which project
modules each command of dvc.yaml runs.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# CodeCarbon logs even at level warning unless this is set before it is imported.
os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
# Progress bars redraw ten times a second; in a log file (no terminal) one line every 30 s is enough.
if not sys.stderr.isatty():
    os.environ.setdefault("TQDM_MININTERVAL", "30")

from pipeline import config  # noqa: E402
from pipeline.allocator import keep_freed_memory  # noqa: E402
from pipeline.config import study_file  # noqa: E402
from pipeline.errors import Terminated, UserError  # noqa: E402

# The module that runs each command.
STAGES = {
    "prepare": "pipeline.stages.prepare",
    "sad": "pipeline.stages.sad",
    "plan": "pipeline.stages.plan",
    "train": "pipeline.stages.train",
    "forecast": "pipeline.stages.forecast",
    "evaluate": "pipeline.stages.evaluate",
    "score": "pipeline.stages.score",
    "separate": "pipeline.stages.separate",
    "report": "pipeline.stages.report",
    "resolve": "pipeline.stages.resolve",
    "launch": "pipeline.stages.launch",
}
WITHOUT_PARAMS = ("score",)  # commands that need no params file (`score --params` is optional)
# The commands of dvc.yaml's stages: they refuse to run when study.json, from which DVC reads their
# params, is out of date with the params file.
DVC_COMMANDS = ("prepare", "sad", "train", "evaluate", "report", "launch")


def _run(args, stage, cfg) -> None:
    """Call the stage's entry point with what its command line gave."""
    command = args.command
    if command in ("prepare", "sad", "report", "resolve"):
        stage.run(cfg)
    elif command == "plan":
        stage.run(cfg, as_json=args.json)
    elif command == "train" and args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        stage.run_ranks(args.params, args.variant, args.seed, args.nproc)
    elif command == "train":
        stage.run(cfg, args.variant, args.seed)
    elif command == "forecast":
        stage.run(cfg, args.variant, steps=args.steps, seed=args.seed)
    elif command == "evaluate":
        stage.run_bounds(cfg) if args.bounds else stage.run(cfg, args.variant, args.seed)
    elif command == "score":
        stage.run(args.reference_dir, args.estimates_dir, args.json, backend=args.bsseval, study=cfg)
    elif command == "separate":
        stage.run(cfg, args.variant, args.audio, args.out, args.seed)
    elif command == "launch":
        if args.status:
            stage.status(cfg)
        else:
            stage.run(cfg, args.variant, args.seed, dry_run=args.dry_run, executor=args.executor, jobs=args.jobs,
                      partition=args.partition, account=args.account, gpus_per_job=args.gpus,
                      cpus_per_job=args.cpus, mem_gb=args.mem_gb, time_min=args.time_min, requeues=args.requeues,
                      options=args.options)


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

    def seed(p):
        p.add_argument("--seed", type=int, metavar="N", help="the run's seed (default: the study's first, `seed`)")

    def command(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name not in WITHOUT_PARAMS:
            p.add_argument("--params", default=str(config.DEFAULT_PARAMS), metavar="FILE",
                           help="params file (default: params.yaml)")
        return p

    command("prepare", "write the synthetic data set, or check a real MUSDB18(-HQ) folder, and its manifest")
    command("sad", "source activity detection over the training tracks")
    p = command("plan", "list the variants with their architecture and parameter count")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p = command("train", "train a variant's models with one seed (stage train@VARIANT-seedN)")
    p.add_argument("--variant", required=True, metavar="NAME")
    seed(p)
    p.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                   help="data-parallel processes on this machine (torchrun; the global batch is N x the batch; "
                        "across nodes run `torchrun ... -m pipeline.cli train` yourself)")
    p = command("forecast", "predict a variant's training time and kWh from a few measured steps")
    p.add_argument("--variant", required=True, metavar="NAME")
    seed(p)
    p.add_argument("--steps", type=_positive_int, default=20, metavar="K",
                   help="training steps to measure (default 20)")
    p = command("evaluate", "separate and score the test split (stage evaluate@VARIANT)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--variant", metavar="NAME")
    which.add_argument("--bounds", action="store_true", help="the mixture and oracle-IRM reference rows")
    seed(p)
    p = command("score", "score an estimates folder in the MUSDB layout against references (no params file needed)")
    p.add_argument("reference_dir", metavar="REFERENCE_DIR")
    p.add_argument("estimates_dir", metavar="ESTIMATES_DIR")
    p.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    p.add_argument("--bsseval", choices=("torch", "museval"), default="torch",
                   help="BSSEval implementation: the fast one (default) or museval itself")
    p.add_argument("--params", metavar="FILE",
                   help="log the scoring and its energy into this study's MLflow experiment (default: none)")
    p = command("separate", "separate audio files with a trained variant")
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="wav or flac files, mono or stereo, any sample rate")
    p.add_argument("--variant", required=True, metavar="NAME")
    p.add_argument("--out", default="separated", metavar="DIR", help="output folder (default: separated)")
    seed(p)
    command("report", "tables, figures and the energy ledger of the study")
    command("resolve", "write study.json, the resolved study dvc.yaml reads (run it after editing the params)")
    p = command("launch", "train and evaluate runs as jobs on this machine or a cluster (submitit); "
                          "each job records its stages in DVC")
    p.add_argument("--variant", action="append", metavar="NAME", help="a variant to launch (repeatable; default all)")
    seed(p)
    p.add_argument("--executor", choices=("local", "slurm", "oar", "debug"),
                   help="where the jobs run (default: runtime.launch.executor)")
    p.add_argument("--jobs", type=_positive_int, metavar="N",
                   help="jobs at once (default: runtime.launch.jobs; 0 there: all on a cluster, one a core here)")
    p.add_argument("--partition", metavar="NAME", help="SLURM partition or OAR queue")
    p.add_argument("--account", metavar="NAME", help="SLURM account")
    p.add_argument("--gpus", type=int, metavar="N", help="GPUs per job")
    p.add_argument("--cpus", type=int, metavar="N", help="CPUs per job")
    p.add_argument("--mem-gb", type=_positive_int, metavar="GB",
                   help="a SLURM job's memory (default: runtime.launch.mem_gb; 0 there: its forecast's peak + 25%%)")
    p.add_argument("--time-min", type=_positive_int, metavar="MIN", help="a job's time limit in minutes")
    p.add_argument("--requeues", type=_positive_int, metavar="N",
                   help="how often a job may reach its time limit and be requeued (default: as its forecast needs)")
    p.add_argument("--options", metavar="TEXT", help='more scheduler options, e.g. --options="--qos=high"')
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the cluster script, submit nothing")
    mode.add_argument("--status", action="store_true", help="the jobs of the latest launch and their progress")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config.load(args.params) if args.params else None
        if args.command in DVC_COMMANDS:
            study_file.check(cfg)
        keep_freed_memory()  # before the stage's first tensor
        _run(args, importlib.import_module(STAGES[args.command]), cfg)
    except UserError as err:
        print(f"sepcost {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"sepcost {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def entry() -> None:
    """The `sepcost` command. A stage stopped by a signal has closed its run and written its
    checkpoint when `Terminated` reaches here; the interpreter's teardown of torch, MLflow and
    CodeCarbon would then take about 2 s of the scheduler's grace period and do nothing the job
    needs, so the process ends at once, its output flushed."""
    try:
        code = main()
    except Terminated as stop:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
