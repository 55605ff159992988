"""Start the model server: ``python -m components.serve --model_name ... --model_uri ...``.

Takes every flag of KServe's shared parser (``--model_name``, ``--http_port``, ``--grpc_port``,
``--enable_grpc``, ...) plus ``--model_uri`` and ``--tracking_uri``.
"""

import argparse

import kserve
from kserve import logging as kserve_logging

from components.serve.model import DriftpilotModel


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser: KServe's model server flags plus the model's."""
    parser = argparse.ArgumentParser(
        prog="python -m components.serve",
        description="Serve a registered driftpilot model over KServe's V1 and V2 protocols.",
        parents=[kserve.model_server.parser],
    )
    parser.add_argument(
        "--model_uri",
        required=True,
        help="MLflow model URI: models:/<name>@champion, models:/<name>/<version>, runs:/...",
    )
    parser.add_argument(
        "--tracking_uri",
        default=None,
        help="MLflow tracking/registry URI (default: MLflow's, i.e. env MLFLOW_TRACKING_URI)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Load the model and serve it until SIGTERM/SIGINT.

    Args:
        argv: Command line arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers != 1:
        # As in kserve's lgbserver: the model is loaded in this process; multi-process serving is untested.
        parser.error("--workers must be 1: one process loads and serves the model")
    if args.configure_logging:
        kserve_logging.configure_logging(args.log_config_file)
    model = DriftpilotModel(args.model_name, args.model_uri, tracking_uri=args.tracking_uri)
    model.load()
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    )
    server.start([model])


if __name__ == "__main__":
    main()
