#!/usr/bin/env bash
# Gather the real CustomResourceDefinitions the chart and the components use, from the pinned
# upstream sources, into the driftpilot cache, and print that folder on stdout (progress on stderr):
# - KServe (InferenceService, ServingRuntime, ...): config/crd/full of the github.com/kserve/kserve module;
# - Argo Workflows, which KFP runs on: manifests/base/crds/minimal of github.com/argoproj/argo-workflows/v3
#   (the CRDs Argo's and KFP's install manifests apply; the full ones add 8 MB of schema);
# - the Prometheus operator (PrometheusRule, ServiceMonitor): example/prometheus-operator-crd of its module;
# - the Dask operator (DaskCluster, DaskWorkerGroup, ...): the CRDs the dask-kubernetes package
#   installed in .venv ships with its operator chart (a Python project: not on the Go module proxy).
# Go modules come from `go mod download` (its module cache); nothing is copied into the repository.
# KFP's own CRDs (ScheduledWorkflow, Viewer) are not here: kubeflow/pipelines tags releases without
# a "v", so the Go module proxy serves no version of it. KServe's newest module served is v0.20.0
# (the Python SDK is 0.21.0); the InferenceService v1beta1 schema is the one both use.
set -euo pipefail
cd "$(dirname "$0")/.."

# KSERVE_VERSION, the one the cluster runs.
# shellcheck source=manifests/platform/versions.env
. manifests/platform/versions.env
ARGO_VERSION=v3.7.3
PROMETHEUS_OPERATOR_VERSION=v0.85.0

cache=${DRIFTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftpilot}
dask_dir=$(.venv/bin/python -c 'import dask_kubernetes, pathlib; print(pathlib.Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds")')
dask_version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("dask-kubernetes"))')
stamp="argo-crds=minimal kserve=$KSERVE_VERSION argo=$ARGO_VERSION prometheus-operator=$PROMETHEUS_OPERATOR_VERSION dask-kubernetes=$dask_version"
out=$cache/crds
if [ "$(cat "$out/VERSIONS" 2>/dev/null)" = "$stamp" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
echo "gathering CRDs ($stamp) into $out ..." >&2
rm -rf "$out.tmp" && mkdir -p "$out.tmp"/{kserve,argo,prometheus,dask}
kserve=$(./scripts/go-module-dir.sh "github.com/kserve/kserve@$KSERVE_VERSION")
cp "$kserve"/config/crd/full/serving.kserve.io_*.yaml "$out.tmp/kserve/"
argo=$(./scripts/go-module-dir.sh "github.com/argoproj/argo-workflows/v3@$ARGO_VERSION")
cp "$argo"/manifests/base/crds/minimal/argoproj.io_*.yaml "$out.tmp/argo/"
prometheus=$(./scripts/go-module-dir.sh "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
cp "$prometheus"/example/prometheus-operator-crd/monitoring.coreos.com_{prometheusrules,servicemonitors,podmonitors}.yaml "$out.tmp/prometheus/"
cp "$dask_dir"/*.yaml "$out.tmp/dask/"
chmod -R u+w "$out.tmp"
echo "$stamp" > "$out.tmp/VERSIONS"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"
