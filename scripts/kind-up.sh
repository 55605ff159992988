#!/usr/bin/env bash
# Bring up driftpilot on a local kind cluster: create the cluster (manifests/kind/cluster.yaml),
# build and load the images, install the pinned platform add-ons (manifests/platform/versions.env:
# KFP standalone, KServe in Knative mode with cert-manager, the Dask operator), the namespace and the
# chart; the chart's post-install Job uploads the compiled pipelines to KFP and creates the
# recurring drift-response run.
#
# Needs docker, kind, kubectl, helm, go and internet access (images and add-on manifests are
# pulled from their registries). It cannot run on a machine without a container registry.
#
# Usage: scripts/kind-up.sh [--plan]     --plan prints the steps and pinned versions and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=manifests/platform/versions.env
source manifests/platform/versions.env
./scripts/setup.sh >&2

cluster=driftpilot
namespace=driftpilot
components_image=$(.venv/bin/python -c 'from components.common.images import COMPONENTS_IMAGE; print(COMPONENTS_IMAGE)')
serving_image=$(.venv/bin/python -c 'from components.common.images import SERVING_IMAGE; print(SERVING_IMAGE)')
dask_chart=$(.venv/bin/python -c 'import dask_kubernetes, pathlib; print(pathlib.Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator")')
kfp_manifests="github.com/kubeflow/pipelines/manifests/kustomize"

steps=(
  "kind create cluster --config manifests/kind/cluster.yaml (kind $KIND_VERSION)"
  "build $components_image and $serving_image (scripts/build-images.sh), kind load both"
  "KFP standalone $KFP_VERSION: $kfp_manifests/cluster-scoped-resources and env/platform-agnostic"
  "KServe $KSERVE_VERSION in Knative mode: the module's kserve-knative-mode-full-install-with-manifests.sh"
  "Dask operator: helm install $dask_chart"
  "kubectl apply -f manifests/driftpilot/namespace.yaml; helm upgrade --install driftpilot charts/driftpilot"
)
if [ "${1:-}" = "--plan" ]; then
  printf '%s\n' "${steps[@]}"
  exit 0
fi
for tool in docker kind kubectl helm go; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool not found on PATH" >&2; exit 1; }
done
step() { echo "== $1" >&2; }

step "${steps[0]}"
kind get clusters | grep -qx "$cluster" || kind create cluster --config manifests/kind/cluster.yaml

step "${steps[1]}"
DRIFTPILOT_BASE_IMAGE=${DRIFTPILOT_BASE_IMAGE:-python:3.11.14-slim-bookworm} ./scripts/build-images.sh
kind load docker-image --name "$cluster" "$components_image" "$serving_image"

step "${steps[2]}"
kubectl apply -k "$kfp_manifests/cluster-scoped-resources?ref=$KFP_VERSION"
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k "$kfp_manifests/env/platform-agnostic?ref=$KFP_VERSION"

step "${steps[3]}"
kserve_dir=$(./scripts/go-module-dir.sh "github.com/kserve/kserve@$KSERVE_VERSION")
bash "$kserve_dir/hack/setup/quick-install/kserve-knative-mode-full-install-with-manifests.sh"

step "${steps[4]}"
helm upgrade --install dask-operator "$dask_chart" --namespace dask-operator --create-namespace --wait

step "${steps[5]}"
kubectl apply -f manifests/driftpilot/namespace.yaml
kubectl -n kubeflow rollout status deployment/ml-pipeline --timeout=600s
helm upgrade --install driftpilot charts/driftpilot --namespace "$namespace" --wait --timeout 15m

echo "driftpilot is up: kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80, then http://localhost:8080" >&2
