"""The backtest on real streams: Elec2 rows and GDELT exports, every policy, kpis.json as specified."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.backtest.core import BacktestConfig, csv_stream, gdelt_stream, kpis, run_backtest
from components.common.errors import ConfigError
from pipelines.cli import main

SMALL = BacktestConfig(rounds=20, window=2000, periods=(2, 3), costs=(0.01, 0.1))


@pytest.fixture(scope="module")
def elec2(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 8,000 rows of the real Elec2 stream, two of them without a label."""
    frame = pd.read_csv(data_dir / "streams" / "elec2.csv").head(8000)
    frame.loc[[10, 20], "class"] = np.nan
    path = tmp_path_factory.mktemp("elec2") / "elec2.csv"
    frame.to_csv(path, index=False)
    return path


def test_every_policy_replays_the_stream_and_kpis_follow_the_format(elec2: Path) -> None:
    stream = csv_stream(elec2, target="class", time_column="period", batch_size=1000)
    assert stream.metric == "accuracy" and stream.unlabelled_rows == 2 and len(stream.batches) == 8
    assert "period" not in stream.batches[0].features.columns
    reported: list[tuple[int, int]] = []
    runs = run_backtest(stream, SMALL, progress=lambda done, total: reported.append((done, total)))
    assert reported == [(i, len(runs)) for i in range(1, len(runs) + 1)]
    document = kpis(stream, runs)
    assert set(document["policies"]) == {
        "static", "every_batch", "periodic_2", "periodic_3", "driftpilot", "driftpilot@0.01", "driftpilot@0.1"
    }  # fmt: skip
    retrains = {name: p["retrains"] for name, p in document["policies"].items()}
    assert retrains["static"] == 0 and retrains["every_batch"] == 6  # after batches 1..6 (the 7th is last)
    assert retrains["periodic_2"] == 3 and retrains["periodic_3"] == 2
    assert retrains["driftpilot"] <= retrains["every_batch"]
    # Fits are shared, each charged to every policy using it: periodic_2's are every_batch's.
    seconds = {name: p["train_seconds"] for name, p in document["policies"].items()}
    assert seconds["periodic_2"] < seconds["every_batch"] and seconds["static"] < seconds["periodic_3"]
    # UPF's area: a fixed policy's metric less its retrains' cost per batch, averaged over the costs.
    every = document["policies"]["every_batch"]
    expected = every["mean_batch_metric"] - (0.01 + 0.1) / 2 * every["retrains"] / 7
    assert document["upf_area"]["every_batch"] == pytest.approx(expected)
    assert document["upf_area"]["static"] == document["policies"]["static"]["mean_batch_metric"]
    assert isinstance(document["upf_beats_every_periodic"], bool) and "driftpilot" in document["upf_area"]
    for policy in document["policies"].values():
        assert set(policy) == {"mean_batch_metric", "overall_metric", "retrains", "train_seconds"}
        assert 0.4 < policy["mean_batch_metric"] < 1 and policy["train_seconds"] > 0
    actions = document["driftpilot_actions"]
    trained = sum(actions.get(a, 0) for a in ("update", "retrain", "retrain_tune"))
    assert trained == retrains["driftpilot"] and len(document["driftpilot_responses"]) == sum(actions.values())
    retrained = [r for r in document["driftpilot_responses"] if ": retrain (" in r]
    assert all("on the held-out rows" in r and "expected gain" in r for r in retrained)


def test_a_gdelt_folder_is_read_as_one_batch_per_export_scored_by_auc(gdelt_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gdelt"
    folder.mkdir()
    for name in ("20241022130000", "20241022131500", "20241022133000", "20241022134500"):
        (folder / f"{name}.export.CSV").symlink_to(gdelt_dir / f"{name}.export.CSV")
    stream = gdelt_stream(folder)
    assert stream.metric == "auc" and [b.name for b in stream.batches] == sorted(b.name for b in stream.batches)
    assert len(stream.batches) == 4
    document = kpis(stream, run_backtest(stream, SMALL))
    assert 0.5 < document["policies"]["static"]["mean_batch_metric"] < 1


def test_bad_input_is_refused_with_a_clear_error(elec2: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no column 'label'"):
        csv_stream(elec2, target="label")
    with pytest.raises(ConfigError, match="binary target"):
        csv_stream(elec2, target="nswprice")
    with pytest.raises(ConfigError, match="at least two"):
        csv_stream(elec2, target="class", batch_size=10_000)


def test_the_cli_writes_kpis_and_a_plot(elec2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = [
        "backtest",
        "--data",
        str(elec2),
        "--target",
        "class",
        "--batch-size",
        "2000",
        "--rounds",
        "10",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    document = json.loads((out / "kpis.json").read_text())["streams"][0]
    assert document["metric"] == "accuracy" and "driftpilot" in document["policies"]
    assert (out / "backtest.png").stat().st_size > 10_000 and (out / "frontier.png").stat().st_size > 10_000
    page = (out / "report.html").read_text()  # the frontier joins the pages a person reads
    assert page.count("data:image/png;base64,") == 3 and "<tr class=ours><td>driftpilot</td>" in page
    assert "of every_batch's gain over static" in page and "<script" not in page
    assert "2 rows have no label" in capsys.readouterr().out
    assert main(["backtest", "--data", str(elec2), "--out", str(out)]) == 2  # a CSV needs --target


def test_several_streams_make_one_report_with_a_frontier_panel_each(
    elec2: Path, gdelt_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "gdelt"
    folder.mkdir()
    for name in ("20241022130000", "20241022131500", "20241022133000"):
        (folder / f"{name}.export.CSV").symlink_to(gdelt_dir / f"{name}.export.CSV")
    out = tmp_path / "out"
    argv = ["backtest", "--data", str(elec2), "--data", str(folder), "--target", "class", "--batch-size", "2000",
            "--gdelt-batch-rows", "1000", "--rounds", "10", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    streams = json.loads((out / "kpis.json").read_text())["streams"]
    assert [Path(s["source"]).name for s in streams] == ["elec2.csv", "gdelt"]
    assert streams[1]["metric"] == "auc" and streams[1]["batches"] >= 4  # three exports cut into 1,000-row batches
    assert len([n for n in streams[0]["policies"] if n.startswith("periodic_")]) == 19  # every k from 2 to 20
