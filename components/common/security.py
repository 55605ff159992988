"""The securityContext of every pod driftpilot starts itself (the chart's pods get the same from its values).

Kept apart from ``components.common.kube`` so that building a manifest does not import the
Kubernetes client.
"""

__all__ = ["SECURE_CONTAINER", "SECURE_POD"]

SECURE_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
"""Container securityContext: no escalation, read-only root (a writable ``/tmp`` is an emptyDir), no capabilities."""

SECURE_POD = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
"""Pod securityContext: the images' non-root user and the runtime's default seccomp profile."""
