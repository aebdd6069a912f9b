#!/usr/bin/env bash
# The deployments, checked without a Docker engine or a cluster:
#   1. scripts/compose-check.sh: docker-compose.yml (`docker-compose config`), the
#      Dockerfile (hadolint), and their static rules;
#   2. scripts/k8s-check.sh: every kustomization of deploy/k8s rendered (`kubectl
#      kustomize`) and validated against the Kubernetes schemas, with the Strimzi
#      resources and the workloads' rules;
#   3. scripts/deploy/check_topology.py: every medbook container of both, run through its
#      own binary's `check-config` with exactly the environment the deployment gives it.
#      Each MEDBOOK_* variable must be a setting of that service, the configuration must
#      be valid, and the listeners, probe paths, gRPC services and topics the binary
#      reports must match the declared ports, probes, health checks, Services,
#      Prometheus targets and kafka/topics.txt.
# Builds the three services (debug) if needed. Exits non-zero naming every problem.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_toolchain
scripts/compose-check.sh
scripts/k8s-check.sh

cargo build --quiet --locked -p booking-service -p notification-service -p audit-service
renderings=()
for file in target/deploy/k8s-*.yaml; do
    name=$(basename "$file" .yaml)
    renderings+=(--k8s "${name#k8s-}=${file}")
done
[ ${#renderings[@]} -gt 0 ] || die "scripts/k8s-check.sh rendered nothing"
"$TOOLS_DIR/deploy-venv/bin/python" scripts/deploy/check_topology.py --bin target/debug --repo . \
    --compose target/deploy/compose.rendered.yml "${renderings[@]}"
