"""The ``driftpilot`` command: compile, demo, ingest, drift, a GDELT mirror, KFP deploy, rollback, audit."""

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from components.common.errors import ConfigError, DriftpilotError
from pipelines.progress import Progress
from pipelines.runlog import library_output_to, terminal

__all__ = ["compile_pipelines", "main"]


def compile_pipelines(out_dir: Path) -> list[Path]:
    """Compile every pipeline to KFP YAML in ``out_dir``; return the files written."""
    from kfp import compiler

    from pipelines.drift_response import drift_response_pipeline
    from pipelines.training import training_pipeline
    from pipelines.tuning import tuning_pipeline

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    pipelines = (
        ("training", training_pipeline),
        ("drift_response", drift_response_pipeline),
        ("tuning", tuning_pipeline),
    )
    for name, pipeline in pipelines:
        path = out_dir / f"{name}_pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        written.append(path)
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftpilot", description="Autonomous MLOps loop on Kubeflow.")
    parser.add_argument(
        "--log",
        type=Path,
        help="where libraries' warnings, log records and progress bars go (env DRIFTPILOT_LOG; default "
        "<home>/logs/driftpilot.log, home being DRIFTPILOT_HOME or .driftpilot); the command's own lines are printed",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    comp = commands.add_parser("compile", help="compile the pipelines to KFP YAML")
    comp.add_argument("--out", type=Path, default=Path("dist/pipelines"), help="output folder")
    demo = commands.add_parser("demo", help="run the whole loop locally on the real GDELT files")
    demo.add_argument("--home", help="output folder, started afresh (env DRIFTPILOT_HOME; default .driftpilot)")
    demo.add_argument("--data", dest="data_dir", help="data folder with gdelt/ (env DRIFTPILOT_DATA_DIR)")
    demo.add_argument("--train-batches", type=int, default=10, help="earliest batches to train on (default 10)")
    demo.add_argument(
        "--max-replay", type=int, default=10, help="replay at most N later batches (default 10; 0 for all)"
    )
    demo.add_argument("--keep-serving", action="store_true", help="leave the model server running")
    demo.add_argument("--no-drill", dest="drill", action="store_false", help="skip the release drill at the end")
    ing = commands.add_parser("ingest", help="ingest GDELT export files into the lake (Dask)")
    ing.add_argument("--source", required=True, help="GDELT feed URL, s3://bucket/prefix, or a local folder")
    ing.add_argument("--lake", required=True, help="lake: a local folder or s3://bucket/prefix")
    ing.add_argument("--since", help="first batch, YYYYMMDD[HHMMSS] (default: the oldest)")
    ing.add_argument("--until", help="last batch, YYYYMMDD[HHMMSS] (default: the newest)")
    ing.add_argument("--latest", action="store_true", help="only the newest batch (lastupdate.txt)")
    ing.add_argument("--workers", type=int, default=2, help="Dask workers; 0 runs in this process (default 2)")
    ing.add_argument("--cluster", default="local", help="local, kubernetes, or a scheduler address (default local)")
    ing.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds (default 30)")
    ing.add_argument("--retries", type=int, default=3, help="HTTP retries with backoff (default 3)")
    ing.add_argument("--cache", default="", help="folder caching the master list and downloads (HTTP)")
    drift = commands.add_parser("drift", help="compare a window with a reference; write DIR/report.json")
    drift.add_argument(
        "--reference", required=True, type=Path, help="GDELT export, Parquet, CSV with a header, or a profile.json"
    )
    drift.add_argument("--current", required=True, type=Path, help="GDELT export, Parquet or CSV with a header")
    drift.add_argument("--target", help="label column, tested for a prior shift apart from the features")
    drift.add_argument("--task", help="task name or YAML whose features are compared (default: every column)")
    drift.add_argument("--out", required=True, type=Path, help="output folder")
    drift.add_argument("--fdr-q", type=float, default=0.05, help="false-discovery rate across features (0.05)")
    drift.add_argument("--drift-share", type=float, default=0.25, help="share of drifted features for DRIFT (0.25)")
    drift.add_argument(
        "--evidently",
        action="store_true",
        help="also write Evidently's report (sampled) as evidently.html beside report.html",
    )
    mirror = commands.add_parser("gdelt-mirror", help="serve local export files as a GDELT feed on 127.0.0.1")
    mirror.add_argument("--data", required=True, type=Path, help="folder of export files (or with a gdelt/ folder)")
    mirror.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    mirror.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="BATCH=KIND",
        help="inject a fault (404, 500, timeout, md5, duplicate)",
    )
    kfp_deploy = commands.add_parser(
        "kfp-deploy", help="upload the pipelines to a KFP API and schedule the recurring drift response"
    )
    kfp_deploy.add_argument("--host", required=True, help="KFP API URL, e.g. http://ml-pipeline.kubeflow:8888")
    kfp_deploy.add_argument("--namespace", default=None, help="namespace of a multi-user KFP (default: none)")
    kfp_deploy.add_argument(
        "--schedule", default=None, help="cron, 5 or 6 fields (default '0 5,20,35,50 * * * *': every 15 min)"
    )
    kfp_deploy.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="drift-response pipeline parameter"
    )
    kfp_deploy.add_argument("--experiment", default="driftpilot", help="experiment (default driftpilot)")
    kfp_deploy.add_argument(
        "--run-name", default="driftpilot-drift-response", help="recurring run name; one of this name is replaced"
    )
    kfp_deploy.add_argument("--service-account", default="", help="service account of the run's pods")
    kfp_deploy.add_argument(
        "--env-config-map", default="", help="ConfigMap of settings every step pod reads (DRIFTPILOT_LAKE, ...)"
    )
    kfp_deploy.add_argument(
        "--env-secret",
        action="append",
        default=[],
        metavar="NAME:KEY=VAR[,KEY=VAR]",
        help="Secret keys every step pod gets as variables (repeatable)",
    )
    coordinate = commands.add_parser(
        "coordinate", help="start a drift-response run per online drift alarm (one per incident); serve /metrics"
    )
    coordinate.add_argument("--kfp-host", default="", help="KFP API URL (default: run locally with kfp.local)")
    coordinate.add_argument("--namespace", default=None, help="namespace of a multi-user KFP (default: none)")
    coordinate.add_argument("--experiment", default="driftpilot", help="the recurring run's experiment")
    coordinate.add_argument(
        "--run-name",
        default="driftpilot-drift-response",
        help="the recurring run whose version and parameters runs use",
    )
    coordinate.add_argument("--source", default="", help="local runs: the GDELT feed, bucket or folder")
    coordinate.add_argument("--model", action="append", default=[], help="act on this model's alarms only (repeatable)")
    coordinate.add_argument("--cooldown", type=float, default=60.0, help="minutes an incident takes alarms in (60)")
    coordinate.add_argument("--interval", type=float, default=30.0, help="seconds between polls (30)")
    coordinate.add_argument("--port", type=int, default=0, help="serve the decision metrics here (0: not served)")
    coordinate.add_argument("--once", action="store_true", help="poll once and exit")
    kfp_deploy.add_argument(
        "--state-pvc", default="", help="PersistentVolumeClaim of the decision state the deciding steps mount"
    )
    kfp_deploy.add_argument(
        "--state-mount", default="/var/lib/driftpilot/decisions", help="where they mount it (the state_dir parameter)"
    )
    ui = commands.add_parser(
        "ui", help="serve the incidents and approvals page (token: env DRIFTPILOT_UI_TOKEN, else one is printed)"
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ui.add_argument("--port", type=int, default=8090, help="port (8090)")
    ui.add_argument("--secure-cookie", action="store_true", help="mark the session cookie Secure (behind HTTPS)")
    rollback = commands.add_parser(
        "rollback", help="send an InferenceService's traffic back to its previous model (takes its rollout lease)"
    )
    rollback.add_argument("--name", required=True, help="InferenceService name")
    rollback.add_argument("--namespace", default="default", help="its namespace (default: default)")
    rollback.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster, else ~/.kube/config)")
    rollback.add_argument("--context", default=None, help="kubeconfig context")
    rollback.add_argument("--holder", default="", help="who rolls back, recorded on the lease (default: user@host)")
    audit = commands.add_parser("audit", help="check the audit ledger, or tell an incident's story from it")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    for name, text in (("verify", "check every line's hash and the chain; name the first line that fails"),
                       ("show", "every entry of one incident, in order")):  # fmt: skip
        sub = audit_commands.add_parser(name, help=text)
        if name == "show":
            sub.add_argument("incident", help="the incident's id")
            sub.add_argument(
                "--narrate", action="store_true", help="also summarise it (DRIFTPILOT_NARRATOR_URL, _MODEL, _API_KEY)"
            )
        sub.add_argument(
            "--ledger", type=Path, default=None, help="ledger file (default: <DRIFTPILOT_HOME>/audit/ledger.jsonl)"
        )
    for name, text in (("approve", "let an escalated response run"), ("reject", "turn an escalated response down")):
        answer = commands.add_parser(name, help=text)
        answer.add_argument("approval", help="the approval's id (a<N>; `driftpilot approvals` lists them)")
        answer.add_argument("--actor", default="", help="who answers (default: user@host)")
    commands.add_parser("approvals", help="list the escalated responses waiting for an answer")
    backtest = commands.add_parser("backtest", help="replay a labelled history batch by batch under each policy")
    backtest.add_argument(
        "--data", type=Path, required=True, action="append", help="a CSV, or a folder of GDELT 2.0 exports (repeatable)"
    )
    backtest.add_argument(
        "--target", action="append", default=[], help="a CSV's binary label column (one for all CSVs, or one per CSV)"
    )
    backtest.add_argument("--time-col", default=None, help="the CSV's column to order rows by (not a feature)")
    backtest.add_argument("--batch-size", type=int, default=1000, help="rows per CSV batch (default 1000)")
    backtest.add_argument(
        "--gdelt-batch-rows", type=int, default=0, help="rows per GDELT batch (default 0: one batch per export)"
    )
    backtest.add_argument("--metric", default="auto", choices=["auto", "accuracy", "auc"], help="batch metric")
    backtest.add_argument("--window", type=int, default=5000, help="rows retrains use, 0 for all (default 5000)")
    backtest.add_argument("--rounds", type=int, default=200, help="LightGBM rounds per model (default 200)")
    backtest.add_argument("--batch-hours", type=float, default=24.0, help="hours between batches without times")
    backtest.add_argument("--safety-policy", default="", help="safety policy YAML for driftpilot (default: built-in)")
    backtest.add_argument("--out", type=Path, required=True, help="folder for kpis.json and backtest.png")
    scenarios = commands.add_parser("scenarios", help="drift and data-quality scenarios on synthetic data")
    scenario_commands = scenarios.add_subparsers(dest="scenarios_command", required=True)
    run = scenario_commands.add_parser("run", help="run every scenario through driftpilot; write an HTML report")
    run.add_argument("--out", type=Path, required=True, help="folder for report.html and scenarios.json")
    run.add_argument("--dataset", choices=["gdelt", "creditcard", "all"], default="all", help="base data (all)")
    run.add_argument("--data", dest="data_dir", default=None, help="the shared data folder (DRIFTPILOT_DATA_DIR)")
    run.add_argument("--batches", type=int, default=24, help="batches per scenario (24)")
    run.add_argument("--change", type=int, default=12, help="the batch the scenarios change at (12)")
    run.add_argument("--rows", type=int, default=1500, help="rows per batch (1500)")
    run.add_argument("--rounds", type=int, default=100, help="LightGBM rounds per model (100)")
    run.add_argument("--ctgan-epochs", type=int, default=100, help="CTGAN's training epochs (100)")
    run.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and the injections")
    run.add_argument("--only", action="append", default=[], help="run this scenario only (repeatable)")
    feed = commands.add_parser("synth-feed", help="write a synthetic GDELT feed: days of 15-minute export files")
    feed.add_argument("--out", type=Path, required=True, help="folder for the YYYYMMDDHHMMSS.export.CSV files")
    feed.add_argument("--days", type=float, default=1.0, help="days of batches, 96 a day (default 1)")
    feed.add_argument("--rows", type=int, default=1500, help="rows per batch (default 1500)")
    feed.add_argument("--start", default="2030-01-01T00:00:00+00:00", help="the first batch's time (ISO 8601, UTC)")
    feed.add_argument("--data", dest="data_dir", default=None, help="the shared data folder (DRIFTPILOT_DATA_DIR)")
    feed.add_argument("--seed", type=int, default=0, help="seed of the draws")
    replay = commands.add_parser("replay", help="decide an incident log again; write the decisions as JSON Lines")
    replay.add_argument(
        "--incidents", type=Path, default=None, help="incident log (default: <home>/audit/incidents.jsonl)"
    )
    replay.add_argument("--safety-policy", default="", help="safety policy YAML file (default: built-in)")
    replay.add_argument("--knowledge", type=Path, default=None, help="knowledge base JSON Lines (default: none)")
    replay.add_argument("--out", type=Path, required=True, help="decisions file (JSON Lines)")
    return parser


def _synth_feed(args: argparse.Namespace) -> int:
    import datetime as dt

    from components.synth.feed import SyntheticFeed
    from pipelines.settings import Settings

    try:
        start = dt.datetime.fromisoformat(args.start)
    except ValueError as exc:
        raise ConfigError(f"--start {args.start!r} is not an ISO 8601 time") from exc
    start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    data_dir = Settings.from_env(data_dir=args.data_dir).data_dir
    feed = SyntheticFeed(sorted((data_dir / "gdelt").glob("*.export.CSV")), seed=args.seed)
    written = feed.write(args.out, start=start, batches=max(1, round(args.days * 96)), rows=args.rows, seed=args.seed)
    size = f"{written.bytes / 1e6:.1f} MB in {written.seconds:.1f} s"
    print(f"{len(written.files)} batches, {written.rows} rows, {size}: {written.files[0].name} .. "
          f"{written.files[-1].name} in {args.out}")  # fmt: skip
    return 0


def _scenarios(args: argparse.Namespace) -> int:
    from components.synth.report import write_report
    from components.synth.scenarios import generator_quality, run_scenarios
    from pipelines.settings import Settings

    data_dir = Settings.from_env(data_dir=args.data_dir).data_dir
    datasets = ["gdelt", "creditcard"] if args.dataset == "all" else [args.dataset]
    runs = {}
    for dataset in datasets:
        print(f"{dataset}: fitting the generators and checking them against the real rows ...", flush=True)
        quality = generator_quality(dataset, data_dir, seed=args.seed, ctgan_epochs=args.ctgan_epochs)
        results = run_scenarios(
            dataset, data_dir, batches=args.batches, change=args.change, rows=args.rows, rounds=args.rounds,
            seed=args.seed, only=tuple(args.only), progress=Progress(f"{dataset} scenarios"),
        )  # fmt: skip
        for r in results:
            delay = "—" if r.scenario.change is None else ("missed" if r.delay is None else f"{r.delay} batch(es)")
            print(f"  {r.scenario.name:30} truth {r.scenario.kind:12} delay {delay:12} false alarms "
                  f"{r.false_alarms}  first action {r.first_action:12} {'ok' if r.correct else 'WRONG'}")  # fmt: skip
        runs[dataset] = (results, quality)
    document = write_report(runs, args.out)
    for dataset, part in document.items():
        print(f"{dataset}: {part['summary']}")
    print(f"report: {args.out / 'report.html'}")
    return 0


def _ui(args: argparse.Namespace) -> None:
    import os
    import secrets

    import uvicorn

    from components.ui.app import create_app
    from pipelines.settings import Settings

    token = os.environ.get("DRIFTPILOT_UI_TOKEN", "")
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"token (sign in with it to answer approvals): {token}")
    settings = Settings.from_env()
    try:
        app = create_app(settings.decisions, token=token, secure_cookie=args.secure_cookie)
    except ValueError as exc:
        raise ConfigError(f"DRIFTPILOT_UI_TOKEN: {exc}") from exc
    print(f"incidents and approvals of {settings.decisions.folder} on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _coordinate(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from components.common.store import Store
    from components.decide.coordinator import Coordinator, DeferredLauncher, Launcher, LocalLauncher
    from components.decide.metrics import DecisionCollector
    from pipelines.settings import Settings

    settings = Settings.from_env()
    launcher: Launcher
    if args.kfp_host:
        import kfp

        from pipelines.kfp_deploy import launcher_for_recurring_run

        def on_kfp() -> Launcher:
            client = kfp.Client(host=args.kfp_host, namespace=args.namespace)
            return launcher_for_recurring_run(
                client, experiment=args.experiment, run_name=args.run_name, namespace=args.namespace
            )

        launcher = DeferredLauncher(on_kfp)
    else:
        if not args.source:
            raise ConfigError("local runs need --source (the GDELT feed, bucket or folder new batches come from)")
        from pipelines.drift_response import drift_response_pipeline
        from pipelines.local import init_local, run_pipeline

        init_local(settings.pipeline_root)
        arguments = {**settings.drift_response_arguments(), "source": args.source}
        launcher = LocalLauncher(
            lambda a: run_pipeline(drift_response_pipeline, a, log_path=settings.logs_dir / f"{a['incident']}.log"),
            arguments,
        )
    coordinator = Coordinator(
        Store(settings.lake), settings.decisions, launcher, cooldown_minutes=args.cooldown, models=tuple(args.model)
    )
    if args.port:
        registry = CollectorRegistry()
        registry.register(DecisionCollector(settings.decisions))
        start_http_server(args.port, registry=registry)
        print(f"decision metrics on :{args.port}/metrics", flush=True)
    while True:
        try:
            launches = coordinator.poll()
        except Exception as error:  # the KFP API or the lake is down: the alarm stays unseen, the next poll retries
            if args.once:
                raise
            print(f"poll failed, retrying in {args.interval:g} s: {type(error).__name__}: {error}", file=terminal())
            launches = []
        for launch in launches:
            print(f"{launch.incident}: run {launch.run} for {launch.model_name} (alarm {launch.alarm})", flush=True)
        if args.once:
            return 0
        time.sleep(args.interval)


def _replay(args: argparse.Namespace) -> int:
    from components.decide.core import load_safety_policy, replay_files
    from components.decide.knowledge import KnowledgeBase
    from pipelines.settings import Settings

    incidents = args.incidents or Settings.from_env().decisions.incidents
    if not incidents.is_file():
        raise ConfigError(f"no incident log at {incidents}: give one with --incidents")
    knowledge = KnowledgeBase.load(args.knowledge) if args.knowledge else None
    count = replay_files(incidents, args.out, policy=load_safety_policy(args.safety_policy), knowledge=knowledge)
    print(f"{count} decisions from {incidents} written to {args.out}")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from components.backtest.core import BacktestConfig, csv_stream, gdelt_stream, run_backtest, write_backtest
    from components.decide.core import load_safety_policy

    csvs = [path for path in args.data if not path.is_dir()]
    if csvs and len(args.target) not in (1, len(csvs)):
        raise ConfigError(f"{len(csvs)} CSV stream(s) and {len(args.target)} --target: give one for all or one each")
    targets = iter(args.target * len(csvs) if len(args.target) == 1 else args.target)
    streams = []
    for path in args.data:
        if path.is_dir():
            streams.append(gdelt_stream(path, metric=args.metric, batch_rows=args.gdelt_batch_rows))
            continue
        streams.append(csv_stream(
            path, target=next(targets), time_column=args.time_col, batch_size=args.batch_size, metric=args.metric
        ))  # fmt: skip
    safety = load_safety_policy(args.safety_policy)
    config = BacktestConfig(rounds=args.rounds, window=args.window, safety=safety, batch_hours=args.batch_hours)
    progress = Progress("policies replayed", phases=len(streams))
    runs = [(stream, run_backtest(stream, config, progress=progress)) for stream in streams]
    document = write_backtest(runs, args.out)
    for stream, row in zip(streams, document["streams"], strict=True):
        print(f"{stream.source}: {len(stream.batches)} batches, metric {stream.metric}")
        if stream.unlabelled_rows:
            print(f"  {stream.unlabelled_rows} rows have no label and are left out (counted in kpis.json)")
        for name, policy in row["policies"].items():
            if name.startswith(("periodic_", "driftpilot@")) and name not in ("periodic_5", "periodic_10"):
                continue  # every schedule and cost is in kpis.json and the frontier plots
            print(f"  {name:12} mean {policy['mean_batch_metric']:.4f}  overall {policy['overall_metric']:.4f}  "
                  f"retrains {policy['retrains']:3}  train {policy['train_seconds']:.1f}s")  # fmt: skip
        print(f"  driftpilot: {row['driftpilot_share_of_gain']:.0%} of every_batch's gain with "
              f"{row['driftpilot_share_of_retrains']:.0%} of its retrains and {row['driftpilot_share_of_seconds']:.0%} "
              f"of its training seconds; UPF area above every schedule: {row['upf_beats_every_periodic']}")  # fmt: skip
    print(f"{args.out / 'kpis.json'}, {args.out / 'frontier.png'}")
    return 0


def _approvals(args: argparse.Namespace) -> int:
    import getpass
    import socket

    from pipelines.settings import Settings

    settings = Settings.from_env()
    approvals = settings.decisions.approvals()
    if args.command == "approvals":
        for item in approvals.pending():
            proposal = item["proposal"]
            print(f"{item['id']:6} {proposal['incident']:24} {proposal['action']:12} {'; '.join(item['reasons'])}")
        return 0
    actor = args.actor or f"{getpass.getuser()}@{socket.gethostname()}"
    resolved = approvals.resolve(args.approval, approve=args.command == "approve", actor=actor)
    print(f"{resolved['id']}: {resolved['decision']} by {actor} ({resolved['proposal']['action']} for incident "
          f"{resolved['proposal']['incident']})")  # fmt: skip
    return 0


def _audit(args: argparse.Namespace) -> int:
    from components.common.audit import AuditLedger
    from pipelines.settings import Settings

    ledger = AuditLedger(args.ledger) if args.ledger else Settings.from_env().decisions.ledger
    if args.audit_command == "verify":
        check = ledger.verify()
        if check.ok:
            print(f"{ledger.path}: {check.entries} entries, chain intact")
            return 0
        print(f"{ledger.path}: line {check.line}: {check.problem}", file=terminal())
        return 1
    story = ledger.story(args.incident)
    if not story:
        print(f"no entries for incident {args.incident!r} in {ledger.path}", file=terminal())
        return 1
    for entry in story:
        reason = entry.data.get("reason") or entry.data.get("summary") or ""
        scalars = {
            k: v for k, v in entry.data.items() if k not in ("reason", "summary") and not isinstance(v, list | dict)
        }
        details = ", ".join(f"{k}={v}" for k, v in scalars.items())
        said = f" | {reason}" if reason else ""
        print(f"{entry.time}  #{entry.seq:<5} {entry.kind:10} {entry.actor:14} {details}{said}")
    check = ledger.verify()
    print(f"chain: {'intact' if check.ok else f'BROKEN at line {check.line}: {check.problem}'}")
    if args.narrate:
        import os

        from components.decide.narrator import Narrator

        narrator = Narrator.from_env(os.environ)
        if narrator is None:
            raise ConfigError("--narrate needs DRIFTPILOT_NARRATOR_URL and DRIFTPILOT_NARRATOR_MODEL")
        print(f"\n{narrator.narrate(story)}")
    return 0 if check.ok else 1


def _rollback(args: argparse.Namespace) -> None:
    import getpass
    import socket

    from components.common.kube import api_client
    from components.deploy.kserve import model_uri, roll_back, traffic
    from components.deploy.lease import rollout_lease

    api = api_client(args.kubeconfig, context=args.context)
    holder = args.holder or f"{getpass.getuser()}@{socket.gethostname()}"
    try:
        with rollout_lease(api, args.namespace, args.name, holder):
            isvc = roll_back(api, args.namespace, args.name)
    except LookupError as exc:
        raise ConfigError(str(exc)) from exc
    split = traffic(isvc)
    if split.get("canary") == 0:
        print(f"{args.namespace}/{args.name}: all traffic to the previous revision (canary at 0%)")
    else:
        print(f"{args.namespace}/{args.name}: now serving {model_uri(isvc)} (RawDeployment)")


def _kfp_deploy(args: argparse.Namespace) -> None:
    from pipelines.kfp_deploy import DEFAULT_SCHEDULE, deploy_to_kfp, parse_params
    from pipelines.pod_env import PodEnv, parse_secret_env

    result = deploy_to_kfp(
        args.host,
        params=parse_params(args.param),
        schedule=args.schedule or DEFAULT_SCHEDULE,
        namespace=args.namespace,
        experiment=args.experiment,
        run_name=args.run_name,
        service_account=args.service_account,
        pod_env=PodEnv(args.env_config_map, parse_secret_env(args.env_secret), args.state_pvc, args.state_mount),
    )
    for pipeline in result.pipelines:
        state = "uploaded" if pipeline.created else "unchanged"
        print(f"{pipeline.name}: {state} version {pipeline.version_name} ({pipeline.version_id})")
    replaced = f", replacing {', '.join(result.replaced)}" if result.replaced else ""
    print(f"recurring run {result.recurring_run_id}: cron '{result.schedule}'{replaced}")


def _ingest(args: argparse.Namespace) -> dict[str, object]:
    from components.common.images import COMPONENTS_IMAGE
    from components.common.store import Store
    from components.ingest.core import ManifestEntry, ingest, open_source

    source = open_source(args.source, cache_dir=args.cache, timeout_s=args.timeout, retries=args.retries)
    since, until = args.since, args.until
    if args.latest:
        since = until = source.latest().batch_id
    started = time.perf_counter()

    def progress(entry: ManifestEntry, done: int, planned: int) -> None:
        rate = entry.raw_bytes / 1e6 / entry.seconds if entry.seconds else 0.0
        note = f"  {entry.reason}" if entry.reason else ""
        print(
            f"[{done}/{planned}] {entry.name}  {entry.status}  {entry.rows} rows  "
            f"{entry.rows_quarantined} quarantined  {rate:.1f} MB/s{note}",
            flush=True,
        )

    summary = ingest(
        source,
        Store(args.lake),
        since=since,
        until=until,
        workers=args.workers,
        cluster=args.cluster,
        image=COMPONENTS_IMAGE,
        progress=progress,
    )
    result = summary.to_dict()
    seconds = time.perf_counter() - started
    result["mb_per_s"] = round(summary.raw_megabytes / seconds, 2) if seconds else 0.0
    print(
        f"{result['listed']} files listed, {result['skipped']} already in the lake, {result['ingested']} ingested, "
        f"{result['quarantined']} quarantined, {result['failed']} failed; {result['rows']} rows, "
        f"{result['rows_quarantined']} rows quarantined; {summary.megabytes:.1f} MB fetched, "
        f"{summary.raw_megabytes:.1f} MB uncompressed in {seconds:.1f} s ({result['mb_per_s']} MB/s)"
    )
    return result


def _drift(args: argparse.Namespace) -> int:
    from components.drift.command import run_drift_command
    from components.drift.core import DriftConfig

    report = run_drift_command(
        args.reference,
        args.current,
        out_dir=args.out,
        target=args.target,
        task=args.task,
        evidently=args.evidently,
        config=DriftConfig(fdr_q=args.fdr_q, drift_share=args.drift_share),
    )
    print(report.summary())
    print(f"report: {args.out / 'report.json'}")
    return 0


def _mirror(args: argparse.Namespace) -> None:
    from components.ingest.mirror import GdeltMirror

    if any("=" not in f for f in args.fault):
        raise ConfigError(f"--fault takes BATCH=KIND, e.g. 20241022130000=500; got {args.fault}")
    faults = dict(f.split("=", 1) for f in args.fault)
    mirror = GdeltMirror(args.data, port=args.port, faults=faults)
    mirror.start()
    print(f"serving {len(mirror.files)} GDELT exports at {mirror.url} (lastupdate.txt, masterfilelist.txt)", flush=True)
    mirror.serve_forever()


def _log_path(args: argparse.Namespace) -> Path:
    import os

    given = args.log or os.environ.get("DRIFTPILOT_LOG")
    if given:
        return Path(given)
    home = getattr(args, "home", None) or os.environ.get("DRIFTPILOT_HOME") or ".driftpilot"
    return Path(home) / "logs" / "driftpilot.log"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        with library_output_to(_log_path(args)):
            return _run(args)
    except DriftpilotError as exc:
        print(f"driftpilot: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    """Run one parsed command; return its exit code."""
    if args.command == "compile":
        for path in compile_pipelines(args.out):
            print(path)
    elif args.command == "demo":
        from pipelines.demo import DemoOptions, run_demo
        from pipelines.settings import Settings

        settings = Settings.from_env(home=args.home, data_dir=args.data_dir)
        run_demo(settings, DemoOptions(args.train_batches, args.max_replay, args.keep_serving, args.drill))
    elif args.command == "ingest":
        result = _ingest(args)
        return 1 if result["failed"] else 0
    elif args.command == "drift":
        return _drift(args)
    elif args.command == "gdelt-mirror":
        _mirror(args)
    elif args.command == "kfp-deploy":
        _kfp_deploy(args)
    elif args.command == "rollback":
        _rollback(args)
    elif args.command == "audit":
        return _audit(args)
    elif args.command in ("approve", "reject", "approvals"):
        return _approvals(args)
    elif args.command == "backtest":
        return _backtest(args)
    elif args.command == "replay":
        return _replay(args)
    elif args.command == "coordinate":
        return _coordinate(args)
    elif args.command == "ui":
        _ui(args)
    elif args.command == "scenarios":
        return _scenarios(args)
    elif args.command == "synth-feed":
        return _synth_feed(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
