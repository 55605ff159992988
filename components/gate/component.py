"""KFP wrappers of the promotion gate: a challenger against the champion, a rollback to the previous one."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def gate_challenger(
    champion: Input[Model],
    challenger: Input[Model],
    holdout: Input[Dataset],
    tracking_uri: str,
    model_name: str,
    version: str,
    result: Output[Artifact],
    metrics: Output[Metrics],
    prefer_challenger: bool = False,
) -> NamedTuple("Gate", [("Output", bool), ("reason", str)]):
    """Compare challenger and champion on the same unseen rows and record the verdict in MLflow.

    Paired, cluster-robust tests (DeLong on AUC, per-row log loss, McNemar on accuracy) plus
    calibration and latency guardrails; the verdict is tagged on the challenger's version, which
    is what lets ``release_challenger`` move the ``champion`` alias to it.

    Args:
        champion: The serving champion's model folder.
        challenger: The retrained model's folder.
        holdout: Labelled rows neither was trained on.
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The challenger's registered version.
        result: The verdict with every comparison (JSON).
        metrics: The headline numbers.
        prefer_challenger: Promote an equivalent (non-inferior) challenger too.

    Returns:
        Whether to promote (``Output``, the name kfp.local 2.17 resolves in ``dsl.If``), and why.
    """
    from pathlib import Path

    from components.gate.core import GatePolicy, gate_files
    from components.register.core import record_gate

    policy = GatePolicy(prefer_challenger=prefer_challenger)
    verdict = gate_files(Path(champion.path), Path(challenger.path), Path(holdout.path), Path(result.path), policy)
    record_gate(tracking_uri=tracking_uri, model_name=model_name, version=version, verdict=verdict.to_dict())
    for name, value in verdict.metrics().items():
        metrics.log_metric(name, value)
    return (verdict.promote, verdict.reason)


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def gate_rollback(
    decision: Input[Artifact],
    tracking_uri: str,
    model_name: str,
    champion_version: str,
    version: str,
    result: Output[Artifact],
) -> NamedTuple("RollbackGate", [("Output", bool), ("reason", str)]):
    """Judge a rollback to the previous champion on the decision's evidence and record the verdict in MLflow.

    The verdict is tagged on the previous champion's version like a challenger's, which is what
    lets ``release_challenger`` canary it and move ``champion`` back to it; the registry must
    still hold the champion and previous champion the decision measured.

    Args:
        decision: The decide stage's decision (JSON), with the previous champion's gain on the batch.
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        champion_version: The champion the decision measured.
        version: The previous champion's version, the one to roll back to.
        result: The verdict (JSON), in the gate result's shape ``record_outcome`` reads.

    Returns:
        Whether to release it (``Output``, the name kfp.local 2.17 resolves in ``dsl.If``), and why.
    """
    from pathlib import Path

    from components.gate.core import judge_rollback_files
    from components.register.core import record_rollback_verdict

    verdict = judge_rollback_files(
        decision_path=Path(decision.path), result_path=Path(result.path), champion=champion_version, previous=version
    )
    record_rollback_verdict(tracking_uri=tracking_uri, model_name=model_name, verdict=verdict)
    return (verdict["promote"], verdict["reason"])
