from pathlib import Path

import yaml

from pipelines.cli import main


def test_cli_compiles_both_pipelines(tmp_path: Path) -> None:
    assert main(["compile", "--out", str(tmp_path)]) == 0
    training = yaml.safe_load((tmp_path / "training_pipeline.yaml").read_text())
    response = yaml.safe_load((tmp_path / "drift_response_pipeline.yaml").read_text())
    assert training["pipelineInfo"]["name"] == "driftpilot-training"
    assert response["pipelineInfo"]["name"] == "driftpilot-drift-response"
    executors = response["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert len(images) == 1 and next(iter(images)).startswith("docker.io/driftpilot/python-components:")
    commands = " ".join(" ".join(e["container"].get("command", [])) for e in executors.values())
    assert "pip install" not in commands  # components run on our image, nothing installed at run time
    tasks = response["root"]["dag"]["tasks"]
    assert "retrain" in str(tasks) and tasks["condition-1"]["triggerPolicy"]["condition"]
    assert set(response["root"]["outputDefinitions"]["parameters"]) == {
        "batch_id",
        "rows",
        "drift",
        "batch_auc",
        "baseline_auc",
        "action",
        "reason",
        "kind",
        "tier",
        "incident",
    }
    # One branch per route the decision can take; retrain, update and recalibrate release their
    # candidate through the same nested pipeline, a rollback the previous champion through the same canary.
    routes = {
        task["triggerPolicy"]["condition"].rsplit("== ", 1)[1].strip("'")
        for task in tasks.values()
        if "decide-response-Output" in task.get("triggerPolicy", {}).get("condition", "")
    }
    assert routes == {"retrain", "update", "recalibrate", "rollback"}
    components = set(response["components"])
    releases = {"comp-driftpilot-release-candidate", *(f"comp-driftpilot-release-candidate-{i}" for i in (2, 3))}
    assert releases <= components and "comp-driftpilot-release-candidate-4" not in components
    branches = {"comp-recalibrate-model", "comp-update-classifier", "comp-gate-rollback", "comp-record-outcome"}
    assert branches <= components
    fetch = response["components"]["comp-fetch-champion"]["outputDefinitions"]
    assert "previous" in fetch["artifacts"] and "previous_version" in fetch["parameters"]
    decide = response["components"]["comp-decide-response"]["inputDefinitions"]["artifacts"]
    assert "previous_model" in decide


def test_every_component_parameter_is_documented(tmp_path: Path) -> None:
    main(["compile", "--out", str(tmp_path)])
    for name in ("training_pipeline.yaml", "drift_response_pipeline.yaml"):
        spec = yaml.safe_load((tmp_path / name).read_text())
        for component in spec["components"].values():
            if "executorLabel" not in component:  # dsl.If sub-DAGs pass pipeline channels through
                continue
            for kind in ("parameters", "artifacts"):
                for param, definition in component.get("inputDefinitions", {}).get(kind, {}).items():
                    assert definition.get("description"), f"{name}: {param} has no description"
