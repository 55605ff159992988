"""Start the model server: ``python -m components.serve --model_name ... --model_uri ...``.

Takes KServe's shared model-server flags (``--model_name``, ``--http_port``, ...) plus
``--model_uri`` and ``--tracking_uri``, and serves V1 and V2 REST on ``--http_port`` through
``components.serve.app`` (uvicorn). gRPC is not served: ``--enable_grpc`` and ``--grpc_port`` are
accepted for KServe's sake and ignored.
"""

import argparse
import os

import kserve
import uvicorn
from kserve import logging as kserve_logging

from components.serve.app import build_app
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
        "--logger_url",
        default="",
        help="post each request and response to this URL as KServe's logger would (the drift monitor)",
    )
    parser.add_argument(
        "--max_connection_age_s",
        type=float,
        default=0.0,
        help="close a kept-alive client connection once it is this many seconds old, so a Kubernetes "
        "Service (which balances connections) spreads requests over pods started later; 0: never",
    )
    parser.add_argument(
        "--predict_threads",
        type=int,
        default=1,
        help="OpenMP threads per prediction (1: requests run side by side, each on one thread; a "
        "parallel region over a few rows only waits for a second thread to be scheduled, which on a "
        "busy node is what its latency becomes)",
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
    if args.predict_threads < 1:
        parser.error("--predict_threads must be at least 1")
    if args.configure_logging:
        kserve_logging.configure_logging(args.log_config_file)
    # Read by the OpenMP runtime when the model's library loads (model.load below imports it).
    os.environ["OMP_NUM_THREADS"] = str(args.predict_threads)
    model = DriftpilotModel(args.model_name, args.model_uri, tracking_uri=args.tracking_uri)
    model.load()
    uvicorn.run(
        build_app(model, logger_url=args.logger_url, max_connection_age_s=args.max_connection_age_s),
        host="0.0.0.0",  # a model server in a pod listens on the pod's address
        port=args.http_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="info",
        timeout_keep_alive=args.timeout_keep_alive,
    )


if __name__ == "__main__":
    main()
