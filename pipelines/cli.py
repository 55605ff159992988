"""The ``driftpilot`` command: compile pipelines, run the demo."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from components.common.errors import DriftpilotError

__all__ = ["compile_pipelines", "main"]


def compile_pipelines(out_dir: Path) -> list[Path]:
    """Compile every pipeline to KFP YAML in ``out_dir``; return the files written."""
    from kfp import compiler

    from pipelines.drift_response import drift_response_pipeline
    from pipelines.training import training_pipeline

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, pipeline in (("training", training_pipeline), ("drift_response", drift_response_pipeline)):
        path = out_dir / f"{name}_pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        written.append(path)
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftpilot", description="Autonomous MLOps loop on Kubeflow.")
    commands = parser.add_subparsers(dest="command", required=True)
    comp = commands.add_parser("compile", help="compile the pipelines to KFP YAML")
    comp.add_argument("--out", type=Path, default=Path("dist/pipelines"), help="output folder")
    demo = commands.add_parser("demo", help="run the whole loop locally on the real GDELT files")
    demo.add_argument("--home", help="output folder, started afresh (env DRIFTPILOT_HOME; default .driftpilot)")
    demo.add_argument("--data", dest="data_dir", help="data folder with gdelt/ (env DRIFTPILOT_DATA_DIR)")
    demo.add_argument("--train-batches", type=int, default=10, help="earliest batches to train on (default 10)")
    demo.add_argument("--max-replay", type=int, default=0, help="replay at most N later batches (default all)")
    demo.add_argument("--keep-serving", action="store_true", help="leave the model server running")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "compile":
            for path in compile_pipelines(args.out):
                print(path)
        elif args.command == "demo":
            from pipelines.demo import DemoOptions, run_demo
            from pipelines.settings import Settings

            settings = Settings.from_env(home=args.home, data_dir=args.data_dir)
            run_demo(settings, DemoOptions(args.train_batches, args.max_replay, args.keep_serving))
    except DriftpilotError as exc:
        print(f"driftpilot: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
