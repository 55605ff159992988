"""Fuzz targets: every parser that takes outside input, with the property it must keep on any input.

Shared by the suite (``tests/integration/test_fuzzed_inputs.py``, a bounded number of examples) and
``tests/bench/fuzz.py`` (a time budget per target, executions and crashes reported). Inputs are
Hypothesis strategies built around real data (GDELT export lines, the shipped safety policy, the
model's request columns), mutated the ways a feed, a client or a person gets them wrong. A target's
``check`` raises on a broken property: an exception other than the documented error, a 5xx, a row
neither kept nor quarantined.
"""

import datetime as dt
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from components.common.audit import AuditLedger
from components.common.errors import ConfigError
from components.common.lake import batch_of
from components.common.store import Store
from components.common.task import load_task
from components.decide.approvals import ApprovalError, Approvals
from components.decide.safety import Proposal, Ruling, SafetyPolicy
from components.features.core import input_columns
from components.ingest._parse import parse_file, unpack
from components.ingest._sources import parse_file_list
from components.monitor.core import REQUEST_TYPE, RESPONSE_TYPE, InferenceLogMonitor

REPO = Path(__file__).resolve().parents[1]
EXPORT = "gdelt/20241022130000.export.CSV"
POLICY_FILE = REPO / "components" / "decide" / "safety-policy.yaml"


@dataclass(frozen=True)
class Target:
    """One parser under fuzzing.

    Attributes:
        name: What is fuzzed.
        strategy: Inputs.
        check: Feeds one input and raises when a property breaks.
    """

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]


# JSON the way a client may send it: any shape, numbers at the edges, text with controls.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)  # fmt: skip
_DATATYPES = st.sampled_from(["BYTES", "FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "", "XYZ"])
_TRAVERSALS = st.sampled_from(["", "..", "../a1", "a1/../a1", "/etc/passwd", "a1\x00", "a01", "a-1", "a1.json", " a1"])


def _tensor(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    shape = st.lists(st.integers(min_value=-2, max_value=6), max_size=3) | JSON
    return st.fixed_dictionaries(
        {"name": st.sampled_from(names) | st.text(max_size=6), "shape": shape, "datatype": _DATATYPES},
        optional={"data": st.lists(_SCALARS, max_size=8) | JSON, "parameters": JSON},
    )


@st.composite
def _consistent_tensor(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    """A tensor whose shape its data fills, so the column checks behind the shape check are reached."""
    rows = draw(st.integers(min_value=0, max_value=4))
    data = draw(st.lists(_SCALARS, min_size=rows, max_size=rows))
    return {"name": draw(st.sampled_from(names)), "shape": [rows], "datatype": draw(_DATATYPES), "data": data}


def v1_bodies(columns: list[str]) -> st.SearchStrategy[Any]:
    """V1 request bodies: instances over the model's columns (and strangers) with any values, or any JSON."""
    instance = st.dictionaries(st.sampled_from([*columns, "Bogus", ""]), _SCALARS | JSON, max_size=len(columns) + 1)
    return st.fixed_dictionaries({"instances": st.lists(instance | JSON, max_size=4)}) | JSON


def v2_bodies(columns: list[str]) -> st.SearchStrategy[Any]:
    """V2 request bodies: tensors over the model's columns, consistent or not, or any JSON."""
    tensors = st.lists(_consistent_tensor(columns) | _tensor(columns), max_size=len(columns) + 1)
    return st.fixed_dictionaries({"inputs": tensors}, optional={"id": JSON, "parameters": JSON}) | JSON


def encoded(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bodies as JSON bytes, or bytes that are not JSON at all."""
    return bodies.map(lambda b: json.dumps(b).encode()) | st.binary(max_size=64)


# -- GDELT export files -------------------------------------------------------------------------------


@st.composite
def _mutated_line(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    fields = draw(st.sampled_from(lines)).split(b"\t")
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        where = draw(st.integers(min_value=0, max_value=len(fields) - 1)) if fields else 0
        op = draw(st.sampled_from(["replace", "delete", "duplicate", "bytes", "truncate"]))
        if op == "replace" and fields:
            fields[where] = draw(st.text(max_size=10)).encode("utf-8", "surrogatepass")
        elif op == "delete" and fields:
            del fields[where]
        elif op == "duplicate" and fields:
            fields.insert(where, fields[where])
        elif op == "bytes" and fields:
            fields[where] = draw(st.binary(max_size=6))
        elif op == "truncate":
            joined = b"\t".join(fields)
            fields = joined[: draw(st.integers(min_value=0, max_value=len(joined)))].split(b"\t")
    return b"\t".join(fields)


@st.composite
def export_files(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    """An export: real lines, mutated ones, garbage and blank lines; zipped or not, the zip maybe damaged."""
    chosen = draw(st.lists(st.sampled_from(lines) | _mutated_line(lines) | st.binary(max_size=40), max_size=12))
    content = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n"])).join(chosen) + draw(st.sampled_from([b"", b"\n"]))
    if not draw(st.booleans()):
        return content
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("20241022130000.export.CSV", content)
    packed = bytearray(buffer.getvalue())
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate":
        packed = packed[: draw(st.integers(min_value=0, max_value=len(packed) - 1))]
    elif damage == "flip":
        at = draw(st.integers(min_value=0, max_value=len(packed) - 1))
        packed[at] ^= draw(st.integers(min_value=1, max_value=255))
    return bytes(packed)


def check_export(content: bytes) -> None:
    """Every non-blank line of a readable export is kept or quarantined with a reason; else the file has one."""
    parsed = parse_file(content, "20241022130000.export.CSV")
    try:
        data = unpack(content)
    except zipfile.BadZipFile:
        assert parsed.table is None and "zip" in parsed.file_reason, parsed
        return
    nonblank = [line for line in data.split(b"\n") if line.strip()]
    if not nonblank:
        assert parsed.table is None and parsed.file_reason, parsed
        return
    kept = 0 if parsed.table is None else parsed.table.num_rows
    assert kept + len(parsed.rejected) == len(nonblank), (kept, len(parsed.rejected), len(nonblank))
    assert all(r.reason for r in parsed.rejected)
    assert (parsed.table is None) == bool(parsed.file_reason), parsed.file_reason


# -- lastupdate.txt / masterfilelist.txt ---------------------------------------------------------------

_BASE = "http://data.gdeltproject.org/gdeltv2/"


@st.composite
def file_lists(draw: st.DrawFn) -> str:
    """Listing lines as GDELT publishes them, with mutated fields, other files and garbage."""
    stamp = st.datetimes(dt.datetime(2015, 2, 18), dt.datetime(2030, 1, 1)).map(lambda t: t.strftime("%Y%m%d%H%M%S"))
    kind = st.sampled_from([".export.CSV.zip", ".mentions.CSV.zip", ".gkg.csv.zip", ".export.CSV", ".export.csv"])
    size = st.integers(min_value=0, max_value=10**9).map(str) | st.text(max_size=6)
    md5 = st.binary(min_size=16, max_size=16).map(bytes.hex) | st.text(max_size=8)
    where = st.sampled_from([_BASE, "", "//mirror.example/", "gdeltv2/", "ftp://x/"])
    line = st.builds(lambda s, m, w, t, k: f"{s} {m} {w}{t}{k}", size, md5, where, stamp, kind)
    lines = st.lists(line | st.text(max_size=30), max_size=10)
    return draw(st.sampled_from(["\n", "\r\n"])).join(draw(lines))


def check_file_list(text: str) -> None:
    """Only well-formed export lines come out, each with its size, md5 and a resolvable URL."""
    for file in parse_file_list(text, _BASE):
        assert batch_of(file.name) is not None, file
        assert file.size is not None and file.size >= 0, file
        assert file.location.endswith(file.name), file


# -- the safety policy YAML ----------------------------------------------------------------------------

_YAML_VALUES = (
    _SCALARS
    | st.sampled_from(["22:00", "6:00", "24:00", "fri", "0.8", "-1", "1e309", "[]", "{}"])
    | st.lists(_SCALARS, max_size=3)
)


@st.composite
def policy_texts(draw: st.DrawFn) -> str:
    """The shipped policy with keys changed, dropped or added and blackouts of any shape; or any text."""
    policy = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))
    for key in draw(st.lists(st.sampled_from(sorted(policy)), max_size=3)):
        if draw(st.booleans()):
            policy[key] = draw(_YAML_VALUES)
        else:
            policy.pop(key, None)
    if draw(st.booleans()):
        policy[draw(st.text(max_size=8))] = draw(_YAML_VALUES)
    blackout = st.dictionaries(st.sampled_from(["start", "end", "days", "name", "every"]), _YAML_VALUES, max_size=4)
    policy["blackouts"] = draw(st.lists(blackout | _YAML_VALUES, max_size=2) | _YAML_VALUES)
    text = yaml.safe_dump(policy)
    # People write times unquoted: YAML 1.1 reads `22:00` as the number 1320.
    unquoted = f"blackouts: [{{start: {draw(st.sampled_from(['22:00', '06:30', 'x']))}, end: '06:00'}}]\n"
    return draw(st.sampled_from([text, unquoted, text + unquoted])) if draw(st.booleans()) else draw(st.text())


def check_policy(text: str) -> None:
    """A policy reads, or is refused with a ConfigError that says why."""
    try:
        SafetyPolicy.from_text(text, source="fuzzed")
    except ConfigError as exc:
        assert str(exc), "a ConfigError without a message"


# -- approvals (the ids people type after `driftpilot approve`) -----------------------------------------


def approval_target(folder: Path) -> Target:
    """An answered approval beside a pending one; any id but the pending one is refused and no file moves."""
    ledger = AuditLedger(folder / "ledger.jsonl")
    approvals = Approvals(folder / "approvals", ledger)
    proposal = Proposal(incident="fuzz", action="retrain", confidence=0.5)
    answered = approvals.request(Ruling("escalate", ("fuzzed",), proposal))
    approvals.resolve(answered, approve=False, actor="fuzz")
    pending = approvals.request(Ruling("escalate", ("fuzzed",), proposal))

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    def check(approval_id: str) -> None:
        before = snapshot()
        try:
            approvals.resolve(approval_id, approve=True, actor="fuzz")
        except ApprovalError as exc:
            assert str(exc)
            assert snapshot() == before, f"refusing {approval_id!r} changed files"
            return
        raise AssertionError(f"{approval_id!r} resolved, but only {pending!r} is pending and it was not given")

    # Ids with path parts, padding and other prefixes, the answered one among them.
    ids = st.text(max_size=12) | _TRAVERSALS | st.sampled_from([answered, f"../resolved/{answered}", f"{pending}/."])
    return Target("approval id", ids.filter(lambda i: i != pending), check)


# -- KServe inference-log CloudEvents at the monitor -----------------------------------------------------


def cloud_event_headers() -> st.SearchStrategy[dict[str, str]]:
    """Binary-mode headers as KServe's logger sends them, with attributes dropped, changed or added."""
    base = st.fixed_dictionaries(
        {"Ce-Id": st.text(max_size=10), "Ce-Type": st.sampled_from([REQUEST_TYPE, RESPONSE_TYPE]) | st.text(max_size=8),
         "Ce-Source": st.sampled_from(["http://localhost:9081/"]) | st.text(max_size=8),
         "Ce-Specversion": st.sampled_from(["1.0", "0.3", ""])},
        optional={"Content-Type": st.sampled_from(["application/json", "application/cloudevents+json", "text/plain",
                                                   "application/json; charset=utf-8"]),
                  "Ce-Inferenceservicename": st.text(max_size=8), "Ce-Endpoint": st.sampled_from(["default", "canary"]),
                  "Ce-Modelversion": st.text(max_size=4)},
    )  # fmt: skip
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10)
    return base.map(lambda h: {k: v for k, v in h.items() if v is not None}) | st.dictionaries(printable, printable)


def monitor_events(columns: list[str]) -> st.SearchStrategy[list[tuple[dict[str, str], bytes]]]:
    """A few events in a row (pairs, duplicates, strangers): requests and responses of either protocol."""
    responses = st.fixed_dictionaries({"predictions": st.lists(_SCALARS | JSON, max_size=4)}) | st.fixed_dictionaries(
        {"outputs": st.lists(_tensor(["probability"]), max_size=2)}
    )
    body = encoded(v1_bodies(columns) | v2_bodies(columns) | responses)
    return st.lists(st.tuples(cloud_event_headers(), body), min_size=1, max_size=4)


def monitor_check(lake: Path) -> Callable[[list[tuple[dict[str, str], bytes]]], None]:
    """Each event is answered 2xx or 4xx; a refused one is counted and its body quarantined; flushing works."""
    store = Store(str(lake)).ensure()

    def quarantined() -> int:
        return len([k for k in store.keys("quarantine") if k.endswith(".body")])

    def check(events: list[tuple[dict[str, str], bytes]]) -> None:
        monitor = InferenceLogMonitor(store)
        for headers, body in events:
            before = quarantined()
            receipt = monitor.receive(headers, body)
            assert 200 <= receipt.status < 500 or receipt.status == 503, receipt
            if receipt.status >= 400:
                assert receipt.message and quarantined() == before + 1, receipt
        monitor.flush()
        monitor.metrics()

    return check


# -- the splitter's delayed-labels endpoint ----------------------------------------------------------------


def labels_target(folder: Path) -> Target:
    """``POST /_driftpilot/labels`` on a real splitter remembering predictions of ``r0`` ... ``r3``.

    Any body (and any Content-Length) is answered 200 with every request id counted once, or 400
    with a reason; the splitter goes on answering.
    """
    import http.client
    import threading

    from components.deploy.splitter import ADMIN_PREFIX, Backend, Routes, TrafficSplitter, serve, write_routes

    folder.mkdir(parents=True, exist_ok=True)
    write_routes(folder / "routes.json", Routes(Backend("1", "http://127.0.0.1:9")))
    splitter = TrafficSplitter(folder / "routes.json")
    server = serve(splitter, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def check(request: tuple[str | None, bytes]) -> None:
        length, body = request
        for i in range(4):
            splitter.record(Backend("1", ""), f"r{i}", 200, 0.01, b'{"predictions": [0.2, 0.9]}')
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.putrequest("POST", f"{ADMIN_PREFIX}/labels")
            connection.putheader("Content-Length", str(len(body)) if length is None else length)
            connection.endheaders(body)
            response = connection.getresponse()
            answer = json.loads(response.read())
        finally:
            connection.close()
        assert response.status in (200, 400), (response.status, answer)
        if response.status == 400:
            assert answer["error"], answer
        else:
            labels = json.loads(body)["labels"]  # each id counted once; a matched one scores both its rows
            assert answer["unknown"] + answer["mismatched"] + answer["invalid"] + answer["matched"] // 2 == len(
                labels
            ), (answer, labels)

    ids = st.sampled_from(["r0", "r1", "r2", "r3", "zz", ""]) | st.text(max_size=6)
    values = st.lists(_SCALARS, min_size=2, max_size=2) | st.lists(st.sampled_from([0, 1]), min_size=2, max_size=2)
    labelled = st.fixed_dictionaries({"labels": st.dictionaries(ids, values | JSON, max_size=5)})
    bodies = labelled.map(lambda b: json.dumps(b).encode()) | encoded(JSON)
    # Lengths that are no byte count (a count larger than the body sent would rightly be waited for).
    lengths = st.none() | st.sampled_from(["", "abc", "-1", "1e3", "\u00b9", "0x10"])
    return Target("splitter labels endpoint", st.tuples(lengths, bodies), check)


# -- the model server's V1 and V2 routes ---------------------------------------------------------------


def serving_check(session: Any, url: str, model_name: str) -> Callable[[tuple[str, bytes]], None]:
    """Any body on either route is answered 200 or a 4xx naming what is wrong, never a 500.

    Args:
        session: A ``requests.Session``.
        url: The model server's base URL.
        model_name: The served model.
    """
    paths = {"v1": f"{url}/v1/models/{model_name}:predict", "v2": f"{url}/v2/models/{model_name}/infer"}

    def check(request: tuple[str, bytes]) -> None:
        route, body = request
        response = session.post(paths[route], data=body, headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code in (200, 400), (response.status_code, response.text)
        if response.status_code == 400:
            assert response.json()["error"], response.text
        elif route == "v1":
            scores = response.json()["predictions"]
            assert all(0.0 <= s <= 1.0 for s in scores), scores

    return check


def serving_requests(columns: list[str]) -> st.SearchStrategy[tuple[str, bytes]]:
    """(route, body) pairs for ``serving_check``."""
    return st.tuples(st.just("v1"), encoded(v1_bodies(columns))) | st.tuples(st.just("v2"), encoded(v2_bodies(columns)))


def export_lines(data_dir: Path, count: int = 40) -> list[bytes]:
    """The first ``count`` lines of a real GDELT 2.0 export: the seeds the export strategy mutates."""
    with (data_dir / EXPORT).open("rb") as handle:
        return [handle.readline().rstrip(b"\n") for _ in range(count)]


def offline_targets(data_dir: Path, work: Path) -> list[Target]:
    """The targets that need no model: export files, listings, the policy, approval ids, the monitor's events."""
    columns = list(input_columns(load_task("gdelt-tone")))
    return [
        Target("gdelt export file", export_files(export_lines(data_dir)), check_export),
        Target("masterfilelist / lastupdate", file_lists(), check_file_list),
        Target("safety policy YAML", policy_texts(), check_policy),
        approval_target(work / "approvals"),
        Target("monitor CloudEvents", monitor_events(columns), monitor_check(work / "lake")),
        labels_target(work / "splitter"),
    ]


@contextmanager
def serving_target(work: Path, data_dir: Path) -> Iterator[Target]:
    """The model server (its own process, as deployed) on a model trained on real rows and registered in MLflow."""
    import requests

    from components.deploy.core import deploy_local, stop_local
    from tests.soak import MODEL, register_versions

    tracking_uri = register_versions(work, data_dir, seeds=(1,))
    server = deploy_local(
        model_name=MODEL, model_uri=f"models:/{MODEL}/1", tracking_uri=tracking_uri, state_dir=work / "server"
    )
    try:
        with requests.Session() as session:
            columns = requests.get(f"{server.url}/v2/models/{MODEL}", timeout=10).json()["inputs"]
            check = serving_check(session, server.url, MODEL)
            yield Target("V1/V2 inference payloads", serving_requests([c["name"] for c in columns]), check)
    finally:
        stop_local(work / "server")
