"""``metricanything quickstart``: render -> pretrain -> pseudo-label -> distil -> evaluate -> infer, with an HTML report.

A real run of the whole pipeline with tiny models, sized for ~10 minutes on 2 CPU cores::

    metricanything quickstart                         # -> runs/quickstart/report.html
    metricanything quickstart --out qs_small --budget-minutes 3      # shorter training stages

Re-running with the same options skips the stages that already finished (``--fresh`` re-runs everything).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder (default runs/quickstart)")
    parser.add_argument("--budget-minutes", type=float, default=9.0,
                        help="total time budget; the training stages are sized to fit it (default 9: with the ~40 s first-run set-up, bash run.sh stays under 10 min)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus, the training runs and the examples")
    parser.add_argument("--num-samples", type=int, default=140, help="corpus size, all source kinds (default 140)")
    parser.add_argument("--size", default="128x96", help="corpus / example image size WIDTHxHEIGHT (default 128x96)")
    parser.add_argument("--train-size", type=int, default=96,
                        help="teacher training crop and network input (long side) in pixels (default 96)")
    parser.add_argument("--student-train-size", type=int, default=96,
                        help="student training view in pixels (upsampled to its network input; default 96)")
    parser.add_argument("--teacher-fraction", type=float, default=0.25, help="share of the budget for pretraining")
    parser.add_argument("--student-fraction", type=float, default=0.45, help="share of the budget for distillation")
    parser.add_argument("--min-steps", type=int, default=4, help="fewest training steps per stage (default 4)")
    parser.add_argument("--max-steps", type=int, default=100_000, help="most training steps per stage")
    parser.add_argument("--val-samples", type=int, default=8, help="held-out validation renders per training stage")
    parser.add_argument("--eval-samples", type=int, default=8, help="images per held-out benchmark (default 8)")
    parser.add_argument("--eval-prompt", default="density:0.01", help="prompt pattern of the prompted column")
    parser.add_argument("--examples", type=int, default=3, help="example images for `infer` (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: min(2, CPUs))")
    parser.add_argument("--teacher-config", default="teacher_tiny",
                        help="teacher training config: a shipped preset or a YAML path (default teacher_tiny)")
    parser.add_argument("--student-config", default="student_tiny",
                        help="student training config: a shipped preset or a YAML path (default student_tiny)")
    parser.add_argument("--set-teacher", dest="teacher_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a teacher config value (repeatable), e.g. --set-teacher train.batch_size=4")
    parser.add_argument("--set-student", dest="student_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a student config value (repeatable)")
    parser.add_argument("--fresh", action="store_true", help="re-run every stage even if an earlier run finished it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def options(args: argparse.Namespace) -> Any:
    """The :class:`~metricanything.tasks.quickstart.QuickstartOptions` of parsed arguments."""
    from metricanything.config import parse_set
    from metricanything.tasks.quickstart import QuickstartOptions
    from metricanything.tasks.render import parse_size

    return QuickstartOptions(
        out=args.out,
        budget_minutes=args.budget_minutes,
        seed=args.seed,
        num_samples=args.num_samples,
        render_size=parse_size(args.size),
        train_size=args.train_size,
        student_train_size=args.student_train_size,
        teacher_fraction=args.teacher_fraction,
        student_fraction=args.student_fraction,
        min_steps=args.min_steps,
        max_steps=args.max_steps,
        val_samples=args.val_samples,
        eval_samples=args.eval_samples,
        eval_prompt=args.eval_prompt,
        num_examples=args.examples,
        threads=args.threads,
        teacher_config=args.teacher_config,
        student_config=args.student_config,
        teacher_overrides=parse_set(args.teacher_overrides, flag="--set-teacher"),
        student_overrides=parse_set(args.student_overrides, flag="--set-student"),
        fresh=args.fresh,
        progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.quickstart import run_quickstart

    run_quickstart(options(args))
    return 0
