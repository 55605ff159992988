import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main

REFERENCE, CURRENT = "20241022130000.export.CSV", "20241022150000.export.CSV"


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_gdelt_exports_give_a_typed_report_and_a_reusable_profile(gdelt_dir, tmp_path, capsys) -> None:
    first = tmp_path / "first"
    code = main(
        ["drift", "--reference", str(gdelt_dir / REFERENCE), "--current", str(gdelt_dir / CURRENT), "--out", str(first)]
    )
    assert code == 0
    report = _report(first)
    assert isinstance(report["dataset_drift"], bool)
    assert set(report["features"]) >= {"GoldsteinScale", "EventRootCode", "NumMentions"}
    for feature in report["features"].values():
        assert {"statistic", "p_value", "effect", "drifted"} <= set(feature)
        assert 0.0 <= feature["p_value"] <= 1.0 and feature["effect"] >= 0.0
    assert "target" in report["sections"]  # the task's label, tested apart
    assert "DRIFT" in capsys.readouterr().out.upper()

    again = tmp_path / "again"
    code = main(
        [
            "drift",
            "--reference",
            str(first / "profile.json"),
            "--current",
            str(gdelt_dir / CURRENT),
            "--out",
            str(again),
        ]
    )
    assert code == 0
    assert _report(again)["features"] == report["features"]


def test_csv_tables_with_a_target_column(data_dir, tmp_path) -> None:
    fraud = pd.read_csv(data_dir / "creditcard" / "creditcard_sample_jaehyeongAN_1722rows_all492fraud.csv")
    fraud = fraud.sample(frac=1.0, random_state=0)  # the file lists the frauds last
    reference, current = fraud.iloc[:900], fraud.iloc[900:].copy()
    current["Amount"] = current["Amount"] * 3  # prices tripled
    current = pd.concat([current[current.Class == 1], current[current.Class == 0].iloc[:200]])  # more fraud
    reference.to_csv(tmp_path / "reference.csv", index=False)
    current.to_csv(tmp_path / "current.csv", index=False)
    out = tmp_path / "out"
    args = ["drift", "--reference", str(tmp_path / "reference.csv"), "--current", str(tmp_path / "current.csv")]
    assert main([*args, "--target", "Class", "--out", str(out)]) == 0
    report = _report(out)
    assert report["features"]["Amount"]["drifted"]
    assert "Class" not in report["features"] and report["sections"]["target"]["feature"] == "Class"
    assert report["sections"]["target"]["p_value"] < 1e-6 and report["label_current_rate"] > 0.4
    assert report["sections"]["inputs"]["skipped_columns"] == {
        "Unnamed: 0": "identifier-like: integers, every value distinct"
    }


def test_rejected_export_rows_are_quarantined_not_dropped(gdelt_dir, tmp_path) -> None:
    broken = tmp_path / "20241022150000.export.CSV"
    lines = (gdelt_dir / CURRENT).read_bytes().splitlines(keepends=True)
    broken.write_bytes(b"".join([*lines, b"not\ta\tgdelt\trow\n"]))
    out = tmp_path / "out"
    assert main(["drift", "--reference", str(gdelt_dir / REFERENCE), "--current", str(broken), "--out", str(out)]) == 0
    quarantined = (out / "quarantine" / "current.jsonl").read_text().splitlines()
    assert len(quarantined) == 1 and "not\ta\tgdelt\trow" in json.loads(quarantined[0])["raw"]
    assert _report(out)["sections"]["inputs"]["quarantined_rows"]["current"] == 1
    assert _report(out)["current_rows"] == len(lines)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.parquet", "no such file"),
        (lambda tmp: tmp / "notes.txt", "unknown format"),
        (lambda tmp: tmp / "narrow.csv", "lacks profiled columns"),
    ],
)
def test_bad_inputs_fail_with_an_actionable_message(gdelt_dir, tmp_path, capsys, make, message) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    pd.DataFrame({"GoldsteinScale": [1.0, 2.0]}).to_csv(tmp_path / "narrow.csv", index=False)
    profile_out = tmp_path / "profile"
    main(
        [
            "drift",
            "--reference",
            str(gdelt_dir / REFERENCE),
            "--current",
            str(gdelt_dir / CURRENT),
            "--out",
            str(profile_out),
        ]
    )
    code = main(
        [
            "drift",
            "--reference",
            str(profile_out / "profile.json"),
            "--current",
            str(make(tmp_path)),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err
