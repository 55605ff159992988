"""One promotion at a time per InferenceService: a Kubernetes Lease held for the whole rollout.

Two promotions racing for one InferenceService (a recurring run and a person, two incidents)
must not interleave their patches. Each takes the Lease ``driftpilot-rollout-<name>`` in the
InferenceService's namespace before touching it: created if absent, taken over only when its
holder let it expire, and every write conditional on the resourceVersion read, so of two writers
exactly one succeeds and the other learns who holds it. The Lease is released when the rollout
ends, whichever way.
"""

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kubernetes import client

from components.common.errors import DriftpilotError

__all__ = ["RolloutBusyError", "RolloutLease", "rollout_lease"]


class RolloutBusyError(DriftpilotError):
    """Another rollout holds the InferenceService."""


@dataclass(frozen=True)
class RolloutLease:
    """A held rollout lease.

    Attributes:
        name: The Lease's name.
        namespace: Its namespace.
        holder: Who holds it (e.g. the KFP run or ``user@host``).
    """

    name: str
    namespace: str
    holder: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _expired(lease: client.V1Lease, now: dt.datetime) -> bool:
    spec = lease.spec
    if not spec.holder_identity:
        return True
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None:
        return True
    return renewed + dt.timedelta(seconds=spec.lease_duration_seconds or 0) < now


@contextmanager
def rollout_lease(
    api: client.ApiClient, namespace: str, service: str, holder: str, *, ttl_s: int = 900
) -> Iterator[RolloutLease]:
    """Hold the rollout lease of an InferenceService for the block.

    Args:
        api: Kubernetes API client.
        namespace: The InferenceService's namespace.
        service: The InferenceService's name.
        holder: Who takes it: the KFP run, the incident, ``user@host``.
        ttl_s: Seconds after which a holder that died is considered gone.

    Yields:
        The held lease.

    Raises:
        RolloutBusyError: Another holder has a live lease, or won the race for it.
    """
    leases = client.CoordinationV1Api(api)
    name = f"driftpilot-rollout-{service}"
    now = _now()
    spec = client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=ttl_s, acquire_time=now, renew_time=now)
    try:
        stored = leases.read_namespaced_lease(name, namespace)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        stored = None
    try:
        if stored is None:
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=name, namespace=namespace), spec=spec)
            held = leases.create_namespaced_lease(namespace, body)
        elif _expired(stored, now):
            stored.spec = spec  # the read resourceVersion makes this a compare-and-swap
            held = leases.replace_namespaced_lease(name, namespace, stored)
        else:
            since = stored.spec.acquire_time.isoformat() if stored.spec.acquire_time else "an unknown time"
            raise RolloutBusyError(
                f"{namespace}/{service} is being rolled out by {stored.spec.holder_identity!r} (since {since}, "
                f"lease {name}); retry when it ends or after {stored.spec.lease_duration_seconds} s"
            )
    except client.ApiException as exc:
        if exc.status == 409:  # another writer created or took it between our read and write
            raise RolloutBusyError(f"{namespace}/{service}: another rollout took lease {name} first") from exc
        raise
    try:
        yield RolloutLease(name, namespace, holder)
    finally:
        _release(leases, held)


def _release(leases: client.CoordinationV1Api, held: client.V1Lease) -> None:
    """Delete the lease if it is still the one taken (a takeover after expiry is left alone)."""
    preconditions = client.V1Preconditions(resource_version=held.metadata.resource_version)
    try:
        leases.delete_namespaced_lease(
            held.metadata.name, held.metadata.namespace, body=client.V1DeleteOptions(preconditions=preconditions)
        )
    except client.ApiException as exc:
        if exc.status not in (404, 409):
            raise
