"""Every parser of outside input, fuzzed (``tests/fuzz.py``): bounded here, longer in ``tests/bench/fuzz.py``.

The examples per target keep the module near a minute on two busy cores; the properties are the
product's promise for bad input: a 4xx or a quarantine record with a reason, never a 500 or a traceback.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz import Target, offline_targets, serving_target

pytestmark = pytest.mark.integration

EXAMPLES = {
    "gdelt export file": 150,
    "masterfilelist / lastupdate": 300,
    "safety policy YAML": 300,
    "approval id": 200,
    "monitor CloudEvents": 150,
    "splitter labels endpoint": 200,
    "V1/V2 inference payloads": 300,
}


def _run(target: Target) -> None:
    fuzzed = settings(
        max_examples=EXAMPLES[target.name],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )(given(target.strategy)(target.check))
    fuzzed()


@pytest.fixture(scope="module")
def targets(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    work = tmp_path_factory.mktemp("fuzz")
    found = {t.name: t for t in offline_targets(data_dir, work)}
    (work / "serving").mkdir()
    with serving_target(work / "serving", data_dir) as serving:
        yield {**found, serving.name: serving}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_fuzzed_input_is_refused_with_a_reason_and_never_crashes_the_parser(
    targets: dict[str, Target], name: str
) -> None:
    _run(targets[name])
