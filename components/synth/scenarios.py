"""The scenario library: named drift and data-quality scenarios with ground truth, run through driftpilot.

Every scenario starts from the same base: batches of synthetic rows drawn from a Gaussian copula
fitted to real data (GDELT events or card transactions; ``components.synth.copula``), so each
batch is new data from one unchanging distribution until the scenario changes it. A scenario
changes it from a known batch on (its ground-truth change point) with the drift injectors of
``components.drift.scenarios`` (sudden, incremental, gradual, recurring; covariate, prior,
concept) or with a data-quality fault (a schema break, a null storm), and says what a good
response is.

``run_scenarios`` replays each scenario's batches through the real loop as the backtest does
(``components.backtest.core.replay_driftpilot``: test, then learn; the ingestion-anomaly agent's
checks, the drift tests, the investigator, the strategist, the safety policy at the batches'
15-minute times, and the response), next to the static model, and measures per scenario: the
detection delay (batches from the change to the first batch the investigator calls anything
but ``none``), false alarms (such batches before the change), the first action taken after the
change, and the model's quality over time.
"""

import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import ConfigError
from components.drift.scenarios import (
    Drift,
    Schedule,
    categorical_shift,
    concept_shift,
    drift_stream,
    numeric_shift,
    prior_shift,
)

__all__ = [
    "DATASETS",
    "GENERATORS",
    "DatasetSpec",
    "Scenario",
    "ScenarioResult",
    "base_batches",
    "dataset_spec",
    "generator_quality",
    "library",
    "real_rows",
    "run_scenarios",
    "scenario_summary",
]

GENERATORS = ("gaussian_copula", "ctgan")

DATASETS = ("gdelt", "creditcard")
_ORIGIN = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Scenario:
    """A named scenario with its ground truth.

    Attributes:
        name: Short name.
        description: What happens, in words.
        kind: The truth: ``none``, ``covariate``, ``prior``, ``concept`` or ``data_quality``.
        change: The first changed batch (None for the null scenario).
        expected: Actions a good response takes after the change (empty: none is needed).
        drift: The injected drift (None for no drift or a data-quality fault).
        schedule: How it unfolds.
        fault: The data-quality fault: ``schema_break`` or ``null_storm`` ('' for none).
        fault_column: The column a null storm empties.
    """

    name: str
    description: str
    kind: str
    change: int | None
    expected: tuple[str, ...]
    drift: Drift | None = None
    schedule: Schedule | None = None
    fault: str = ""
    fault_column: str = ""


@dataclass
class DatasetSpec:
    """A dataset's columns as its task sees them.

    Attributes:
        numeric: Numeric features (derived ones included).
        categorical: Categorical features.
        label_column: The column the label is read from (``AvgTone``, ``Class``).
        positive: The label of each row of a frame.
        task: The task's name.
    """

    numeric: list[str]
    categorical: list[str]
    label_column: str
    positive: Callable[[pd.DataFrame], pd.Series]
    task: str


def dataset_spec(dataset: str) -> DatasetSpec:
    """The task columns of ``gdelt`` (gdelt-tone) or ``creditcard`` (creditcard-fraud).

    Raises:
        ConfigError: On another dataset.
    """
    from components.common.task import load_task

    if dataset not in DATASETS:
        raise ConfigError(f"dataset {dataset!r}: use one of {DATASETS}")
    task = load_task("gdelt-tone" if dataset == "gdelt" else "creditcard-fraud")
    numeric = [*task.numeric, *(["event_age_days"] if "event_age_days" in task.derived else [])]
    rule = task.target

    def positive(frame: pd.DataFrame) -> pd.Series:
        values = pd.to_numeric(frame[rule.column], errors="coerce")
        return values < rule.value if rule.op == "lt" else values == rule.value

    return DatasetSpec(numeric, list(task.categorical), rule.column, positive, task.name)


def real_rows(dataset: str, data_dir: Any) -> pd.DataFrame:
    """The real rows the generators are fitted to: the task's features and the label's source.

    Raises:
        ConfigError: When the data folder holds none.
    """
    from pathlib import Path

    from components.common.task import load_task
    from components.features.core import build_features

    folder = Path(data_dir)
    if dataset == "gdelt":
        from components.ingest.core import read_export
        from components.validate.core import validate_events

        task = load_task("gdelt-tone")
        frames = []
        for path in sorted((folder / "gdelt").glob("*.export.CSV")):
            table = read_export(path).table
            if table is not None:
                valid = validate_events(table.to_pandas()).valid
                frames.append(build_features(valid, task).assign(AvgTone=valid["AvgTone"].to_numpy()))
        if not frames:
            raise ConfigError(f"no GDELT exports under {folder / 'gdelt'}")
        return pd.concat(frames, ignore_index=True)
    files = sorted((folder / "creditcard").glob("*.csv"))
    if not files:
        raise ConfigError(f"no credit-card CSV under {folder / 'creditcard'}")
    return pd.read_csv(files[0])


def base_batches(dataset: str, data_dir: Any, *, batches: int, rows: int, seed: int = 0) -> list[pd.DataFrame]:
    """Batches of synthetic rows from a copula fitted to the dataset's real rows.

    Args:
        dataset: ``gdelt`` or ``creditcard``.
        data_dir: The shared data folder.
        batches: How many.
        rows: Rows per batch.
        seed: Seed of the draws (batch ``i`` uses ``seed + i``).

    Returns:
        The batches (feature columns and the label's source column).
    """
    spec = dataset_spec(dataset)
    generator = _generator("gaussian_copula", spec, seed).fit(real_rows(dataset, data_dir))
    return [generator.sample(rows, seed=seed + 1 + i) for i in range(batches)]


def _generator(name: str, spec: "DatasetSpec", seed: int, *, ctgan_epochs: int = 100) -> Any:
    from components.synth.copula import GaussianCopula
    from components.synth.ctgan import CtganGenerator

    columns = ([*spec.numeric, spec.label_column], spec.categorical)
    if name == "gaussian_copula":
        return GaussianCopula(*columns, seed=seed, order_by=spec.label_column)
    if name == "ctgan":
        return CtganGenerator(*columns, seed=seed, epochs=ctgan_epochs)
    raise ConfigError(f"generator {name!r}: use one of {GENERATORS}")


def generator_quality(
    dataset: str, data_dir: Any, *, seed: int = 0, ctgan_epochs: int = 100
) -> dict[str, dict[str, Any]]:
    """Each generator fitted to the dataset's real rows and checked against them.

    Args:
        dataset: ``gdelt`` or ``creditcard``.
        data_dir: The shared data folder.
        seed: Seed of the fits, the samples and the checks.
        ctgan_epochs: CTGAN's training epochs.

    Returns:
        Per generator: ``synthetic_quality``'s results with the fit's and the sample's wall-clock
        seconds (``fit_seconds``, ``sample_seconds``: as many rows as the real table), or
        ``error`` when it cannot run here.
    """
    from components.synth.quality import synthetic_quality

    spec = dataset_spec(dataset)
    real = real_rows(dataset, data_dir)
    found: dict[str, dict[str, Any]] = {}
    for name in GENERATORS:
        started = time.perf_counter()
        try:
            generator = _generator(name, spec, seed, ctgan_epochs=ctgan_epochs).fit(real)
        except ConfigError as exc:
            found[name] = {"error": str(exc)}
            continue
        fitted = time.perf_counter()
        synthetic = generator.sample(len(real), seed=seed + 1)
        sampled = time.perf_counter()
        quality = synthetic_quality(
            real, synthetic, numeric=[*spec.numeric, spec.label_column], categorical=spec.categorical, seed=seed
        )
        timing = {"fit_seconds": round(fitted - started, 3), "sample_seconds": round(sampled - fitted, 3)}
        found[name] = {**quality.to_dict(), **timing}
    return found


def library(dataset: str, *, batches: int = 24, change: int = 12) -> list[Scenario]:
    """The named scenarios for a dataset, changing at batch ``change`` of ``batches``.

    Raises:
        ConfigError: On an unknown dataset, or a change point that leaves fewer than 4 batches
            on either side.
    """
    if not 4 <= change <= batches - 4:
        raise ConfigError(f"change={change} needs at least 4 batches before and after it (of {batches})")
    spec = dataset_spec(dataset)
    sudden, ramp = Schedule("sudden", change), Schedule("incremental", change, length=4)
    gradual, recurring = Schedule("gradual", change, length=4), Schedule("recurring", change, period=3)
    main = "NumMentions" if dataset == "gdelt" else "V14"
    rate = 0.5 if dataset == "gdelt" else 0.6
    scenarios = [
        Scenario("null", "nothing changes: every alarm is a false one", "none", None, ()),
        Scenario(f"sudden_covariate_{main}", f"{main} jumps by 3 IQRs on every row", "covariate", change,
                 ("none", "monitor", "retrain", "retrain_tune", "update"), numeric_shift(main, 3.0), sudden),
        Scenario("incremental_prior", f"the positive rate climbs to {rate:.0%} over 4 batches", "prior", change,
                 ("recalibrate",), prior_shift(spec.positive, rate), ramp),
        Scenario("gradual_concept", "labels lose their tie to the features on a growing share of rows (to 60%)",
                 "concept", change, ("retrain", "retrain_tune", "update", "escalate"),
                 _partial(concept_shift(spec.label_column), 0.6), gradual),
        Scenario("recurring_covariate", f"{main} shifts for 3 batches, back for 3, again", "covariate", change,
                 ("none", "monitor", "retrain", "retrain_tune", "update"), numeric_shift(main, 2.0), recurring),
        Scenario("schema_break", "the export's columns move: 60% of rows are rejected at ingest", "data_quality",
                 change, ("none",), None, sudden, fault="schema_break"),
        Scenario("null_storm", f"{spec.categorical[-1] if spec.categorical else spec.numeric[0]} arrives empty "
                 "on 70% of rows", "data_quality", change, ("none",), None, sudden, fault="null_storm",
                 fault_column=spec.categorical[-1] if spec.categorical else spec.numeric[0]),
    ]  # fmt: skip
    if dataset == "gdelt":
        scenarios += [
            Scenario("country_surge", "events in one country (UP) surge to 40% of the batch", "covariate", change,
                     ("none", "monitor", "retrain", "retrain_tune", "update"),
                     _partial(categorical_shift("ActionGeo_CountryCode", "UP"), 0.4), sudden),
            Scenario("tone_shift_protests", "the news cycle turns: protests (root code 14) are covered 4 points "
                     "more negatively", "concept", change, ("retrain", "retrain_tune", "update", "escalate"),
                     _tone_shift("14", -4.0), sudden),
        ]  # fmt: skip
    return [s for s in scenarios if s.change is None or s.change < batches]


def _partial(drift: Drift, share: float) -> Drift:
    """The drift at ``share`` of its strength (a concept shift on part of the rows)."""
    return Drift(f"{drift.name} × {share:g}", lambda frame, s, rng: drift(frame, s * share, rng), drift.resamples)


def _tone_shift(root: str, points: float) -> Drift:
    """Concept drift in one segment: events of one root code covered ``points`` more negatively."""

    def inject(frame: pd.DataFrame, strength: float, rng: np.random.Generator) -> pd.DataFrame:
        drifted = frame.copy()
        rows = drifted["EventRootCode"].astype("string") == root
        drifted.loc[rows, "AvgTone"] = pd.to_numeric(drifted.loc[rows, "AvgTone"]) + strength * points
        return drifted

    return Drift(f"tone_shift(EventRootCode={root}, {points:+g})", inject)


@dataclass
class ScenarioResult:
    """What driftpilot saw and did in one scenario.

    Attributes:
        scenario: The scenario.
        kinds: The investigator's kind per decided batch (batches 1..n-2).
        actions: The action run per decided batch (``none`` when nothing ran).
        proposals: The strategist's proposal per decided batch.
        metrics: driftpilot's batch metric per scored batch (batches 1..n-1).
        static: The static model's batch metric per scored batch.
        first_alarm: First batch at or after the change the investigator flagged (None: never).
        delay: ``first_alarm - change`` (None: not detected).
        false_alarms: Batches before the change the investigator flagged.
        first_action: The first action run at or after the change ('none' when none ran).
        correct: The first action is one ``expected`` allows.
        retrains: Retrains over the whole stream.
        escalations: Proposals the safety policy escalated.
    """

    scenario: Scenario
    kinds: list[str]
    actions: list[str]
    proposals: list[str]
    metrics: list[float]
    static: list[float]
    first_alarm: int | None
    delay: int | None
    false_alarms: int
    first_action: str
    correct: bool
    retrains: int
    escalations: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        s = self.scenario
        return {
            "name": s.name, "description": s.description, "kind": s.kind, "change": s.change,
            "expected": list(s.expected), "injected": s.drift.name if s.drift else s.fault or "none",
            "first_alarm": self.first_alarm, "delay": self.delay, "false_alarms": self.false_alarms,
            "first_action": self.first_action, "correct": self.correct, "retrains": self.retrains,
            "escalations": self.escalations, "kinds": self.kinds, "actions": self.actions,
            "proposals": self.proposals,
            "mean_metric": float(np.nanmean(self.metrics)), "mean_static": float(np.nanmean(self.static)),
        }  # fmt: skip


def _batch_id(index: int) -> str:
    return f"{_ORIGIN + dt.timedelta(minutes=15 * index):%Y%m%d%H%M%S}"


def _quality(frames: Sequence[pd.DataFrame], rejected: Sequence[int]) -> list[dict[str, Any]]:
    """The ingestion-anomaly agent's report per batch, from its row counts and empty shares."""
    from components.ingest._lake import ManifestEntry, Status
    from components.quality.core import assess

    entries = []
    for index, (frame, quarantined) in enumerate(zip(frames, rejected, strict=True)):
        name = f"{_batch_id(index)}.export.CSV.zip"
        nulls = {c: float(frame[c].isna().mean()) for c in frame.columns}
        entries.append(ManifestEntry(name, name, _batch_id(index), 1, "", Status.INGESTED, len(frame), quarantined,
                                     stats={"null_share": nulls}))  # fmt: skip
    return [assess([entry], entries[:index]).to_dict() for index, entry in enumerate(entries)]


def _stream(scenario: Scenario, base: list[pd.DataFrame], spec: DatasetSpec, seed: int) -> Any:
    from components.backtest.core import Batch, Stream

    frames = list(base)
    rejected = [0] * len(frames)
    if scenario.drift is not None and scenario.schedule is not None:
        frames = drift_stream(frames, scenario.drift, scenario.schedule, seed=seed)
    elif scenario.fault and scenario.change is not None:
        rng = np.random.default_rng(seed)
        for index in range(scenario.change, len(frames)):
            frame = frames[index].copy()
            if scenario.fault == "schema_break":  # the rows ingest rejects never arrive
                kept = rng.random(len(frame)) >= 0.6
                rejected[index] = int((~kept).sum())
                frame = frame[kept].reset_index(drop=True)
            else:
                frame.loc[rng.random(len(frame)) < 0.7, scenario.fault_column] = None
            frames[index] = frame
    reports = _quality(frames, rejected)
    batches = []
    for index, (frame, report) in enumerate(zip(frames, reports, strict=True)):
        labels = spec.positive(frame).to_numpy(dtype="int8")
        features = frame[[*spec.categorical, *spec.numeric]].copy()
        for column in spec.categorical:
            features[column] = features[column].astype("object").astype("string").astype("category")
        for column in spec.numeric:
            features[column] = pd.to_numeric(features[column], errors="coerce").astype("float64")
        at = (_ORIGIN + dt.timedelta(minutes=15 * index)).isoformat()
        batches.append(Batch(_batch_id(index), features, labels, at, report))
    return Stream(tuple(batches), "auc", f"scenario {scenario.name}")


def run_scenarios(
    dataset: str,
    data_dir: Any,
    *,
    batches: int = 24,
    change: int = 12,
    rows: int = 1500,
    rounds: int = 100,
    seed: int = 0,
    only: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[ScenarioResult]:
    """Run every scenario (or those named in ``only``) through driftpilot and the static model.

    Args:
        dataset: ``gdelt`` or ``creditcard``.
        data_dir: The shared data folder.
        batches: Batches a scenario's stream has.
        change: The batch its change starts at.
        rows: Rows a batch has.
        rounds: Boosting rounds of every fit.
        seed: Seed of the sampling and the fits.
        only: Scenario names to run (empty: all).
        progress: Called with (scenarios run, scenarios) after each one.

    Returns:
        One result per scenario.
    """
    from components.backtest.core import BacktestConfig, replay_driftpilot, replay_static

    spec = dataset_spec(dataset)
    scenarios = [s for s in library(dataset, batches=batches, change=change) if not only or s.name in only]
    base = base_batches(dataset, data_dir, batches=batches, rows=rows, seed=seed)
    config = BacktestConfig(rounds=rounds, window=0, seed=seed)
    results = []
    for number, scenario in enumerate(scenarios):
        stream = _stream(scenario, base, spec, seed + 1000 * (number + 1))
        ours, static = replay_driftpilot(stream, config), replay_static(stream, config)
        kinds = [d.investigation.kind for d in ours.decisions]
        actions = [d.action for d in ours.decisions]
        flagged = [i + 1 for i, kind in enumerate(kinds) if kind not in ("none", "insufficient")]
        start = scenario.change if scenario.change is not None else len(stream.batches)
        after = [i for i in flagged if i >= start]
        acted = [a for i, a in enumerate(actions, start=1) if i >= start and a != "none"]
        first_action = acted[0] if acted else "none"
        results.append(ScenarioResult(
            scenario=scenario, kinds=kinds, actions=actions, proposals=[d.proposal.action for d in ours.decisions],
            metrics=ours.batch_metrics, static=static.batch_metrics,
            first_alarm=after[0] if after else None, delay=after[0] - start if after else None,
            false_alarms=sum(i < start for i in flagged), first_action=first_action,
            correct=(first_action in scenario.expected) if scenario.expected else first_action == "none",
            retrains=len(ours.retrain_after),
            escalations=sum(d.ruling.tier == "escalate" for d in ours.decisions),
        ))  # fmt: skip
        if progress is not None:
            progress(len(results), len(scenarios))
    return results


def scenario_summary(results: Sequence[ScenarioResult]) -> dict[str, Any]:
    """Totals over the scenarios: detected share, mean delay, false alarms, correct first actions."""
    changed = [r for r in results if r.scenario.change is not None]
    delays = [r.delay for r in changed if r.delay is not None]
    return {
        "scenarios": len(results),
        "detected": f"{sum(r.delay is not None for r in changed)}/{len(changed)}",
        "mean_delay_batches": float(np.mean(delays)) if delays else math.nan,
        "false_alarms": sum(r.false_alarms for r in results),
        "pre_change_batches": sum((r.scenario.change or len(r.metrics) + 1) - 1 for r in results),
        "correct_first_action": f"{sum(r.correct for r in results)}/{len(results)}",
    }
