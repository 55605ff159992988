"""False-alarm rates on null replays and detection power per drift scenario, on real GDELT rows.

The pool is one full day of consecutive real GDELT 2.0 batches (``../shared/data/gdelt``,
validated). Articles (SOURCEURL) are split once: 40% of them train the model whose drift is
watched, the other 60% are the pool replays draw from, so the model never saw a replay's rows.
Each replay draws a reference and a window from the shuffled pool, whole articles to one side
as they arrive in production (null), then may inject one scenario into the window (power).
Verdicts per replay:

- ``dataset_drift``: the dataset verdict (share of drifted features ≥ drift_share);
- ``any_feature``: at least one feature drifted (BH-significant and above its effect floor);
- ``any_feature_p``: at least one BH-adjusted p-value below q, effect floor ignored;
- ``label_prior``: the label's prior shift test at q;
- ``multivariate``: the domain classifier (with ``--multivariate``);
- ``prediction_shift``, ``estimated_drop`` (no labels, CBPE) and ``realised_drop`` (labels):
  model drift of the model trained on the held-apart articles.

Rates come with 95% Clopper–Pearson intervals. Results go to ``tests/bench/out/drift_calibration.json``.

Usage: python tests/bench/drift_calibration.py [--null 200] [--power 50] [--reference 4000] [--window 1500]
       [--multivariate]
"""

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components.common.task import load_task  # noqa: E402
from components.drift.calibration import replay_rate  # noqa: E402
from components.drift.core import DriftConfig, detect_drift, task_frame  # noqa: E402
from components.drift.model import detect_model_drift  # noqa: E402
from components.drift.multivariate import detect_multivariate_drift  # noqa: E402
from components.drift.profile import group_size  # noqa: E402
from components.drift.scenarios import (  # noqa: E402
    Drift,
    categorical_shift,
    concept_shift,
    numeric_shift,
    prior_shift,
)
from components.features.core import build_labels, split_by_key  # noqa: E402
from components.ingest.core import read_export  # noqa: E402
from components.train.core import train_model  # noqa: E402
from components.validate.core import validate_events  # noqa: E402

DAY = "20241022"


def load_day(data_dir: Path) -> pd.DataFrame:
    """The validated rows of the full day of consecutive batches."""
    frames = []
    for path in sorted((data_dir / "gdelt").glob(f"{DAY}*.export.CSV")):
        table = read_export(path).table
        assert table is not None
        frames.append(validate_events(table.to_pandas()).valid)
    return pd.concat(frames, ignore_index=True)


def scenarios() -> list[tuple[Drift, float]]:
    """The injected drifts and their strengths (share of window rows changed, or mixing level)."""
    return [
        (numeric_shift("GoldsteinScale", 0.25), 1.0),
        (numeric_shift("GoldsteinScale", 0.5), 1.0),
        (numeric_shift("NumMentions", 1.0), 1.0),
        (categorical_shift("EventRootCode", "14"), 0.2),
        (categorical_shift("ActionGeo_CountryCode", "ZZ"), 0.1),
        (prior_shift(lambda f: pd.to_numeric(f["AvgTone"]) < -5, 0.4), 1.0),
        (concept_shift("AvgTone"), 0.5),
    ]


def main() -> None:
    """Run the replays and print and save the rates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--null", type=int, default=200)
    parser.add_argument("--power", type=int, default=50)
    parser.add_argument("--reference", type=int, default=4000)
    parser.add_argument("--window", type=int, default=1500)
    parser.add_argument("--multivariate", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "bench" / "out")
    args = parser.parse_args()

    task = load_task("gdelt-tone")
    config = DriftConfig()
    day = load_day(args.data)
    held = split_by_key(day[task.split_column], 0.4, salt="calibration")
    model = train_model(day[held], task).model
    pool = day[~held].reset_index(drop=True)
    numeric, categorical = [*task.numeric, *task.derived], list(task.categorical)

    def verdicts(reference: pd.DataFrame, window: pd.DataFrame) -> dict[str, bool]:
        report = detect_drift(reference, window, task, config)
        out = {
            "dataset_drift": report.dataset_drift,
            "any_feature": bool(report.drifted_features),
            "any_feature_p": any(f.p_adjusted < config.fdr_q for f in report.features),
            "label_prior": report.label_p_value < config.fdr_q,
        }
        model_drift = detect_model_drift(
            reference_scores=model.predict_proba(reference),
            reference_labels=build_labels(reference, task).to_numpy(),
            current_scores=model.predict_proba(window),
            current_labels=build_labels(window, task).to_numpy(),
            group_sizes=(group_size(reference[task.group_column]), group_size(window[task.group_column])),
        )
        out["prediction_shift"] = bool(model_drift.prediction_shift["drifted"])
        estimated = model_drift.estimated
        out["estimated_drop"] = bool(estimated["drop"] >= 0.02 and estimated["low"] > 0)
        out["realised_drop"] = model_drift.predicted_drop
        if args.multivariate:
            out["multivariate"] = detect_multivariate_drift(
                task_frame(reference, task),
                task_frame(window, task),
                numeric=numeric,
                categorical=categorical,
                groups=(reference[task.group_column], window[task.group_column]),
            ).drifted
        return out

    results: dict[str, Any] = {
        "pool_rows": len(pool),
        "model_rows": int(held.sum()),
        "reference_rows": args.reference,
        "window_rows": args.window,
        "fdr_q": config.fdr_q,
    }
    replays = functools.partial(
        replay_rate,
        pool,
        verdicts,
        reference_rows=args.reference,
        window_rows=args.window,
        group_column=task.group_column,
    )
    started = time.perf_counter()
    null = replays(replays=args.null)
    results["null"] = {name: rate.to_dict() for name, rate in null.items()}
    results["null_seconds"] = round(time.perf_counter() - started, 1)
    print(f"null replays ({args.null}): " + "; ".join(f"{k} {v}" for k, v in null.items()), flush=True)
    results["power"] = {}
    for drift, strength in scenarios():
        rates = replays(replays=args.power, drift=drift, strength=strength, seed=1)
        key = f"{drift.name} @ {strength:g}"
        results["power"][key] = {name: rate.to_dict() for name, rate in rates.items()}
        print(f"{key}: " + "; ".join(f"{k} {v.rate:.2f}" for k, v in rates.items()), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift_calibration.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
