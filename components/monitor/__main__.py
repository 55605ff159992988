"""Run the drift monitor: ``python -m components.monitor --port 8080 --lake s3://lake/gdelt``.

S3 settings come from the environment as for every stage (``DRIFTPILOT_S3_ENDPOINT``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``); SIGTERM writes what is buffered, then exits.
Online drift detection on each model's scores is on by default (ADWIN); ``--online-drift off``
turns it off, ``--online-drift page-hinkley`` switches the detector.
"""

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from components.common.errors import ConfigError
from components.common.store import Store
from components.drift.online import AdwinSettings, OnlineDriftConfig, PageHinkleySettings
from components.monitor.core import InferenceLogMonitor, MonitorConfig
from components.monitor.server import MAX_BODY_BYTES, MonitorServer


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser."""
    defaults = MonitorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m components.monitor",
        description="Receive KServe inference logs, pair requests with responses, write Parquet to the lake.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")  # a pod's server
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--lake",
        default=os.environ.get("DRIFTPILOT_LAKE"),
        help="lake: a local folder or s3://bucket/prefix (env DRIFTPILOT_LAKE)",
    )
    parser.add_argument(
        "--flush-rows", type=int, default=defaults.flush_rows, help=f"rows that trigger a write ({defaults.flush_rows})"
    )
    parser.add_argument(
        "--flush-seconds",
        type=float,
        default=defaults.flush_seconds,
        help=f"age of the oldest buffered row that triggers a write, seconds ({defaults.flush_seconds:g})",
    )
    parser.add_argument(
        "--pair-timeout",
        type=float,
        default=defaults.pair_timeout_seconds,
        help=f"seconds a request waits for its response before it is written alone ({defaults.pair_timeout_seconds:g})",
    )
    parser.add_argument(
        "--max-buffered-rows",
        type=int,
        default=defaults.max_buffered_rows,
        help=f"rows kept while the lake cannot be written; then 503 ({defaults.max_buffered_rows})",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=MAX_BODY_BYTES, help=f"largest event body ({MAX_BODY_BYTES})"
    )
    drift = parser.add_argument_group("online drift detection on each model's score stream")
    online, adwin, ph = OnlineDriftConfig(), AdwinSettings(), PageHinkleySettings()
    drift.add_argument(
        "--online-drift",
        choices=[AdwinSettings.name, PageHinkleySettings.name, "off"],
        default=online.detector.name,
        help=f"detector, or off ({online.detector.name})",
    )
    drift.add_argument(
        "--online-drift-warmup",
        type=int,
        default=online.warmup,
        help=f"scores per model before a detection counts as an alarm ({online.warmup})",
    )
    drift.add_argument(
        "--online-drift-max-models",
        type=int,
        default=defaults.online_drift_max_models,
        help=f"models (and endpoints) watched at most ({defaults.online_drift_max_models})",
    )
    drift.add_argument("--adwin-delta", type=float, default=adwin.delta, help=f"ADWIN significance ({adwin.delta:g})")
    drift.add_argument(
        "--adwin-clock", type=int, default=adwin.clock, help=f"ADWIN: scores between two checks ({adwin.clock})"
    )
    drift.add_argument(
        "--ph-threshold",
        type=float,
        default=ph.threshold,
        help=f"Page-Hinkley threshold, in score units ({ph.threshold:g})",
    )
    drift.add_argument(
        "--ph-delta", type=float, default=ph.delta, help=f"Page-Hinkley tolerated deviation ({ph.delta:g})"
    )
    drift.add_argument(
        "--ph-alpha", type=float, default=ph.alpha, help=f"Page-Hinkley forgetting factor ({ph.alpha:g})"
    )
    drift.add_argument(
        "--ph-min-instances",
        type=int,
        default=ph.min_instances,
        help=f"Page-Hinkley: scores before the first check ({ph.min_instances})",
    )
    drift.add_argument(
        "--ph-mode", choices=["up", "down", "both"], default=ph.mode, help=f"Page-Hinkley direction ({ph.mode})"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def online_drift_config(args: argparse.Namespace) -> OnlineDriftConfig | None:
    """The online detector the command line asks for.

    Args:
        args: Parsed arguments of ``build_parser``.

    Returns:
        The configuration, None for ``--online-drift off``.

    Raises:
        ConfigError: A detector parameter is out of range.
    """
    if args.online_drift == "off":
        return None
    detector: AdwinSettings | PageHinkleySettings
    if args.online_drift == PageHinkleySettings.name:
        detector = PageHinkleySettings(
            min_instances=args.ph_min_instances,
            delta=args.ph_delta,
            threshold=args.ph_threshold,
            alpha=args.ph_alpha,
            mode=args.ph_mode,
        )
    else:
        detector = AdwinSettings(delta=args.adwin_delta, clock=args.adwin_clock)
    return OnlineDriftConfig(detector=detector, signal="score", warmup=args.online_drift_warmup)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then write what is left.

    Args:
        argv: Command line arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.lake:
        parser.error("--lake (or DRIFTPILOT_LAKE) is required")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = MonitorConfig(
            flush_rows=args.flush_rows,
            flush_seconds=args.flush_seconds,
            pair_timeout_seconds=args.pair_timeout,
            max_buffered_rows=args.max_buffered_rows,
            online_drift=online_drift_config(args),
            online_drift_max_models=args.online_drift_max_models,
        )
    except ConfigError as exc:
        parser.error(str(exc))
    monitor = InferenceLogMonitor(Store(args.lake).ensure(), config)
    server = MonitorServer(monitor, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes).start()
    logging.getLogger("driftpilot.monitor").info("listening on %s, writing to %s", server.url, args.lake)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
