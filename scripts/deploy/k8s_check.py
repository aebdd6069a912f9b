#!/usr/bin/env python3
"""Checks the kustomize renderings of deploy/k8s (run by scripts/k8s-check.sh).

    k8s_check.py --repo ROOT --k8s-version 1.34.0 [--k8s-version …] NAME=RENDERING.yaml …

For every rendering:

* every built-in object validates against the official JSON schema of each pinned
  Kubernetes version, strictly (an unknown field is an error), with the schemas the
  PyPI package kubernetes-validate ships;
* Strimzi custom resources (kafka.strimzi.io) are checked structurally: required
  fields, KRaft node pool roles, the kraft / node-pools annotations, replication
  factors against the broker count, no broker option Strimzi forbids, one KafkaTopic per
  topic of kafka/topics.txt with exactly its name, and the services' MEDBOOK_KAFKA__BROKERS
  naming the cluster's bootstrap Service; any other custom resource is an error;
* workloads: requests and limits on every container, non-root and locked-down security
  contexts, readiness and liveness probes on every long-running container whose ports
  name ports the container declares;
* the three services: terminationGracePeriodSeconds > preStop sleep + the service's
  shutdown grace (read from its source), listen addresses on 0.0.0.0 matching the
  declared container ports, MEDBOOK_DATABASE__RUN_MIGRATIONS=false, Service links off,
  a migration Job with the same configuration, a PodDisruptionBudget, booking-service's
  HorizontalPodAutoscaler;
* monitoring per pod: deploy/prometheus/prometheus-kubernetes.yml's pod discovery is
  replayed on every pod template of the rendering (the targets Kubernetes discovery
  would offer, through each job's relabel_configs): each service's pods, and only they,
  become one target each, on the container port named ops, in the job of the service's
  name, with the labels pod and namespace; the pod templates carry the prometheus.io/
  annotations; where the rendering runs Prometheus, its ConfigMaps hold exactly
  prometheus-kubernetes.yml and deploy/prometheus/rules, and its ServiceAccount may get,
  list and watch pods in the namespace;
* Secrets: placeholders stay unusable; real ones are well-formed (JWT secret length,
  ed25519 seed, database URLs matching the in-cluster PostgreSQL's credentials).

Whether each MEDBOOK_* variable is a setting of the service reading it, and the
configuration valid, is not checked here: scripts/deploy-check.sh
(scripts/deploy/check_topology.py) runs each service's own `check-config` with the
environment these manifests give it.

Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
import sys
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import yaml

try:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
except ImportError:  # pragma: no cover - the shell script installs it
    sys.exit("k8s_check.py: kubernetes-validate is not installed (run scripts/k8s-check.sh)")

NAMESPACE = "medbook"
SERVICES = ("booking-service", "notification-service", "audit-service")
IMAGE_PREFIX = "medbook/"
STRIMZI_GROUP = "kafka.strimzi.io"
STRIMZI_API = "kafka.strimzi.io/v1"
PLACEHOLDER_ANNOTATION = "medbook.io/placeholder"
PLACEHOLDER_MARK = "REPLACE-ME"
# The audit-service's two credentials, each a Secret of its own (key `token`).
AUDIT_TOKEN_SECRETS = ("audit-append-token", "audit-read-token")

# Each service's listeners: setting (env var) -> the container port name it must bind.
LISTENERS = {
    "booking-service": {
        "MEDBOOK_HTTP__ADDR": "http",
        "MEDBOOK_HTTP__OPS_ADDR": "ops",
        "MEDBOOK_GRPC__ADDR": "grpc",
    },
    "notification-service": {"MEDBOOK_HTTP__ADDR": "ops"},
    "audit-service": {"MEDBOOK_GRPC__ADDR": "grpc", "MEDBOOK_HTTP__OPS_ADDR": "ops"},
}
# The ports probes may target (never the public API port).
PROBE_PORTS = {
    "booking-service": {"ops", "grpc"},
    "notification-service": {"ops"},
    "audit-service": {"ops", "grpc"},
}

# Strimzi 1.2.0, api/.../kafka/KafkaClusterSpec.java: options of spec.kafka.config the
# operator refuses (it sets them itself), and the exceptions.
STRIMZI_FORBIDDEN_PREFIXES = (
    "listeners, advertised., broker., listener., host.name, port, inter.broker.listener.name, "
    "sasl., ssl., security., password., log.dir, zookeeper.connect, zookeeper.set.acl, "
    "zookeeper.ssl, zookeeper.clientCnxnSocket, authorizer., super.user, "
    "cruise.control.metrics.topic, cruise.control.metrics.reporter.bootstrap.servers, node.id, "
    "process.roles, controller., metadata.log.dir, zookeeper.metadata.migration.enable, "
    "client.quota.callback.static.kafka.admin., client.quota.callback.static.produce, "
    "client.quota.callback.static.fetch, client.quota.callback.static.storage.per.volume.limit.min.available., "
    "client.quota.callback.static.excluded.principal.name.list, prometheus.metrics.reporter., "
    "cordoned.log.dirs"
).split(", ")
STRIMZI_FORBIDDEN_EXCEPTIONS = set(
    (
        "zookeeper.connection.timeout.ms, sasl.server.max.receive.size, ssl.cipher.suites, "
        "ssl.protocol, ssl.enabled.protocols, ssl.secure.random.implementation, "
        "cruise.control.metrics.topic.num.partitions, cruise.control.metrics.topic.replication.factor, "
        "cruise.control.metrics.topic.retention.ms, cruise.control.metrics.topic.auto.create.retries, "
        "cruise.control.metrics.topic.auto.create.timeout.ms, cruise.control.metrics.topic.min.insync.replicas, "
        "broker.session.timeout.ms, broker.heartbeat.interval.ms, controller.socket.timeout.ms, "
        "controller.quorum.election.backoff.max.ms, controller.quorum.election.timeout.ms, "
        "controller.quorum.fetch.timeout.ms"
    ).split(", ")
)
STRIMZI_LISTENER_TYPES = {"internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip", "tlsroute"}
# kafka/topics.txt: "accounts.emails … in production give it retention.ms=86400000", and
# waitlist.offers "retention.ms=86400000 like accounts.emails" (both carry links).
TOPIC_CONFIG = {
    "accounts.emails": {"retention.ms": 86400000},
    "waitlist.offers": {"retention.ms": 86400000},
}

# Monitoring per pod (deploy/prometheus/prometheus-kubernetes.yml).
PROMETHEUS_K8S_CONFIG = "deploy/prometheus/prometheus-kubernetes.yml"
PROMETHEUS_RULES_DIR = "deploy/prometheus/rules"
PROMETHEUS_IMAGE = "prom/prometheus"
SCRAPE_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")
# Prometheus's kubernetes_sd_config fields, and the relabel actions this check replays.
KUBERNETES_SD_FIELDS = {
    "api_server", "role", "kubeconfig_file", "namespaces", "selectors", "attach_metadata",
    "basic_auth", "authorization", "oauth2", "proxy_url", "no_proxy", "proxy_from_environment",
    "proxy_connect_header", "follow_redirects", "enable_http2", "tls_config", "bearer_token",
    "bearer_token_file",
}
KUBERNETES_SD_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
RELABEL_FIELDS = {"source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action"}
RELABEL_ACTIONS = {"replace", "keep", "drop", "keepequal", "dropequal", "labelmap", "labeldrop",
                   "labelkeep", "lowercase", "uppercase"}
# Phases a replayed pod is offered in: targets while running or starting, none once done.
SCRAPED_PHASES = ("Running", "Pending")
DONE_PHASES = ("Succeeded", "Failed")

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Checker:
    def __init__(self, repo: Path, versions: list[str]):
        self.repo = repo
        self.versions = versions
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.topics = self._topics()
        self.grace = {svc: self._shutdown_grace(svc) for svc in SERVICES}
        self.prometheus = self._prometheus_kubernetes()

    # ---- sources of truth in the repository -------------------------------------------

    def _read(self, rel: str) -> str:
        path = self.repo / rel
        try:
            return path.read_text()
        except OSError as e:
            sys.exit(f"k8s_check.py: cannot read {rel}: {e}")

    def _topics(self) -> list[str]:
        topics = []
        for line in self._read("kafka/topics.txt").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                topics.append(line.split()[0])
        return topics

    def _shutdown_grace(self, svc: str) -> int | None:
        """Seconds the service may take after SIGTERM, from its source; None: from
        MEDBOOK_HTTP__SHUTDOWN_GRACE_SECS (booking-service, default in DEFAULTS)."""
        if svc == "booking-service":
            m = re.search(r"shutdown_grace_secs:\s*(\d+)", self._read("booking-service/src/settings.rs"))
            if not m:
                sys.exit("k8s_check.py: no http.shutdown_grace_secs default in booking-service/src/settings.rs")
            return int(m.group(1))
        if svc == "notification-service":
            m = re.search(
                r"timeout\(Duration::from_secs\((\d+)\),\s*finished\)",
                self._read("notification-service/src/consumer.rs"),
            )
            if not m:
                sys.exit("k8s_check.py: cannot find the workers' shutdown timeout in notification-service/src/consumer.rs")
            return int(m.group(1))
        m = re.search(
            r"const SHUTDOWN_GRACE: Duration = Duration::from_secs\((\d+)\)",
            self._read("audit-service/src/startup.rs"),
        )
        if not m:
            sys.exit("k8s_check.py: cannot find SHUTDOWN_GRACE in audit-service/src/startup.rs")
        return int(m.group(1))

    def _prometheus_kubernetes(self) -> dict:
        """deploy/prometheus/prometheus-kubernetes.yml, its discovery blocks checked (the
        promtool of scripts/prometheus-check.sh may be built without them)."""
        rel = PROMETHEUS_K8S_CONFIG
        conf = yaml.safe_load(self._read(rel)) or {}
        jobs = {j.get("job_name"): j for j in conf.get("scrape_configs") or []}
        missing = [svc for svc in SERVICES if svc not in jobs]
        if missing:
            sys.exit(f"k8s_check.py: {rel} has no job {', '.join(missing)}")
        for name, job in jobs.items():
            for i, sd in enumerate(job.get("kubernetes_sd_configs") or []):
                where = f"{rel} job {name} kubernetes_sd_configs[{i}]"
                unknown = set(sd) - KUBERNETES_SD_FIELDS
                if unknown:
                    self.err(where, f"unknown field(s) {sorted(unknown)}")
                if sd.get("role") not in KUBERNETES_SD_ROLES:
                    self.err(where, f"role {sd.get('role')!r} is not one of {sorted(KUBERNETES_SD_ROLES)}")
                ns = sd.get("namespaces") or {}
                if set(ns) - {"names", "own_namespace"}:
                    self.err(where, f"namespaces: unknown field(s) {sorted(set(ns) - {'names', 'own_namespace'})}")
            for i, rc in enumerate(job.get("relabel_configs") or []):
                where = f"{rel} job {name} relabel_configs[{i}]"
                if set(rc) - RELABEL_FIELDS:
                    self.err(where, f"unknown field(s) {sorted(set(rc) - RELABEL_FIELDS)}")
                if rc.get("action", "replace") not in RELABEL_ACTIONS:
                    self.err(where, f"action {rc.get('action')!r} is not one this check replays ({sorted(RELABEL_ACTIONS)})")
                try:
                    re.compile(rc.get("regex", "(.*)"))
                except re.error as e:
                    self.err(where, f"regex {rc.get('regex')!r}: {e}")
        for svc in SERVICES:
            sds = jobs[svc].get("kubernetes_sd_configs") or []
            if not sds or any(sd.get("role") != "pod" for sd in sds):
                self.err(f"{rel} job {svc}", "must discover pods (kubernetes_sd_configs, role pod): "
                         "a Service name would reach another replica at each scrape")
            if jobs[svc].get("static_configs"):
                self.err(f"{rel} job {svc}", "static_configs: the pods are discovered")
        return conf

    # ---- helpers ----------------------------------------------------------------------

    def err(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    @staticmethod
    def ident(doc: dict) -> str:
        return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"

    # ---- the checks -------------------------------------------------------------------

    def check(self, name: str, path: Path) -> None:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if not docs:
            self.err(name, "the rendering is empty")
            return
        self.name = name
        self.docs = docs
        self.by_kind: dict[str, dict[str, dict]] = {}
        for d in docs:
            self.by_kind.setdefault(d.get("kind", ""), {})[(d.get("metadata") or {}).get("name")] = d
        self.check_schemas()
        self.check_namespace()
        self.check_strimzi()
        self.check_workloads()
        self.check_services()
        self.check_monitoring()
        self.check_secrets()
        self.notes.append(f"{name}: {len(docs)} objects")

    def check_schemas(self) -> None:
        for d in self.docs:
            where = f"{self.name}: {self.ident(d)}"
            api = d.get("apiVersion", "")
            if "/" in api and "." in api.split("/")[0] and not api.split("/")[0].endswith(".k8s.io"):
                if api.split("/")[0] != STRIMZI_GROUP:
                    self.err(where, f"custom resource of {api}: no schema and no structural check for it")
                continue
            for version in self.versions:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except ValidationError as e:
                    loc = ".".join(str(p) for p in e.path) or "(top)"
                    self.err(where, f"invalid for Kubernetes {version} at {loc}: {e.message}")
                except SchemaNotFoundError as e:
                    self.err(where, e.message)

    def check_namespace(self) -> None:
        if NAMESPACE not in self.by_kind.get("Namespace", {}):
            self.err(self.name, f"no Namespace {NAMESPACE}")
        for d in self.docs:
            if d.get("kind") == "Namespace":
                continue
            ns = (d.get("metadata") or {}).get("namespace")
            if ns != NAMESPACE:
                self.err(f"{self.name}: {self.ident(d)}", f"namespace is {ns!r}, not {NAMESPACE}")

    # Strimzi -------------------------------------------------------------------------

    def check_strimzi(self) -> None:
        kafkas = list(self.by_kind.get("Kafka", {}).values())
        pools = list(self.by_kind.get("KafkaNodePool", {}).values())
        topics = list(self.by_kind.get("KafkaTopic", {}).values())
        if not (kafkas or pools or topics):
            return
        where = f"{self.name}: Strimzi"
        for d in kafkas + pools + topics:
            if d.get("apiVersion") != STRIMZI_API:
                self.err(f"{self.name}: {self.ident(d)}", f"apiVersion {d.get('apiVersion')}, expected {STRIMZI_API} (Strimzi 1.x)")
            if not isinstance(d.get("spec"), dict):
                self.err(f"{self.name}: {self.ident(d)}", "no spec")
        if len(kafkas) != 1:
            self.err(where, f"{len(kafkas)} Kafka resources, expected exactly one")
            return
        kafka = kafkas[0]
        kname = kafka["metadata"]["name"]
        kw = f"{self.name}: Kafka/{kname}"
        spec = kafka.get("spec") or {}
        ann = kafka["metadata"].get("annotations") or {}
        for a in ("strimzi.io/kraft", "strimzi.io/node-pools"):
            if ann.get(a) != "enabled":
                self.err(kw, f"annotation {a} must be \"enabled\" (is {ann.get(a)!r})")
        if "zookeeper" in spec:
            self.err(kw, "spec.zookeeper: KRaft clusters have none")
        ks = spec.get("kafka")
        if not isinstance(ks, dict):
            self.err(kw, "no spec.kafka")
            return
        for moved in ("replicas", "storage", "resources"):
            if moved in ks:
                self.err(kw, f"spec.kafka.{moved}: set on the KafkaNodePool instead (v1 API)")
        listeners = ks.get("listeners")
        plain_ports = []
        if not isinstance(listeners, list) or not listeners:
            self.err(kw, "spec.kafka.listeners must be a non-empty list")
            listeners = []
        seen_names, seen_ports = set(), set()
        for i, li in enumerate(listeners):
            lw = f"{kw} listener {i}"
            for field in ("name", "port", "type", "tls"):
                if field not in li:
                    self.err(lw, f"missing {field}")
            n, p = li.get("name"), li.get("port")
            if not (isinstance(n, str) and re.fullmatch(r"[a-z0-9]{1,11}", n)):
                self.err(lw, f"name {n!r}: 1-11 lower-case letters or digits")
            if not (isinstance(p, int) and p >= 9092):
                self.err(lw, f"port {p!r}: an integer of 9092 or more (Strimzi reserves lower ones)")
            if li.get("type") not in STRIMZI_LISTENER_TYPES:
                self.err(lw, f"type {li.get('type')!r} is not one of {sorted(STRIMZI_LISTENER_TYPES)}")
            if not isinstance(li.get("tls"), bool):
                self.err(lw, "tls must be true or false")
            if n in seen_names or p in seen_ports:
                self.err(lw, "listener names and ports must be unique")
            seen_names.add(n)
            seen_ports.add(p)
            if li.get("type") == "internal" and li.get("tls") is False and "authentication" not in li:
                plain_ports.append(p)
        config = ks.get("config") or {}
        for key in config:
            if key in STRIMZI_FORBIDDEN_EXCEPTIONS:
                continue
            for prefix in STRIMZI_FORBIDDEN_PREFIXES:
                if key.startswith(prefix):
                    self.err(kw, f"spec.kafka.config.{key}: Strimzi forbids options starting with {prefix!r}")
                    break
        if str(config.get("auto.create.topics.enable")).lower() != "false":
            self.err(kw, "spec.kafka.config.auto.create.topics.enable must be false (topics come from KafkaTopic resources)")
        eo = spec.get("entityOperator") or {}
        if topics and "topicOperator" not in eo:
            self.err(kw, "KafkaTopic resources need spec.entityOperator.topicOperator")

        brokers = controllers = 0
        if not pools:
            self.err(kw, "no KafkaNodePool")
        for pool in pools:
            pw = f"{self.name}: {self.ident(pool)}"
            ps = pool.get("spec") or {}
            if (pool["metadata"].get("labels") or {}).get("strimzi.io/cluster") != kname:
                self.err(pw, f"label strimzi.io/cluster must be {kname}")
            replicas = ps.get("replicas")
            if not (isinstance(replicas, int) and replicas >= 1):
                self.err(pw, f"spec.replicas {replicas!r}: at least 1")
                replicas = 0
            roles = ps.get("roles")
            if not (isinstance(roles, list) and roles and set(roles) <= {"controller", "broker"} and len(set(roles)) == len(roles)):
                self.err(pw, f"spec.roles {roles!r}: a non-empty list of distinct controller / broker")
                roles = []
            if "broker" in roles:
                brokers += replicas
            if "controller" in roles:
                controllers += replicas
            self._check_storage(pw, ps.get("storage"))
        if pools and brokers < 1:
            self.err(kw, "no node pool has the broker role")
        if pools and controllers < 1:
            self.err(kw, "no node pool has the controller role (KRaft)")
        if controllers and controllers % 2 == 0:
            self.err(kw, f"{controllers} KRaft controllers: use an odd number for a quorum")
        for key in (
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
        ):
            rf = config.get(key)
            if rf is None:
                self.err(kw, f"spec.kafka.config.{key} unset (Kafka's default 3 needs 3 brokers)")
            elif int(rf) > brokers:
                self.err(kw, f"spec.kafka.config.{key}={rf} exceeds the {brokers} broker(s)")
        for isr, rf in (("min.insync.replicas", "default.replication.factor"), ("transaction.state.log.min.isr", "transaction.state.log.replication.factor")):
            if isr in config and rf in config and int(config[isr]) > int(config[rf]):
                self.err(kw, f"spec.kafka.config.{isr} exceeds {rf}")

        names = []
        for t in topics:
            tw = f"{self.name}: {self.ident(t)}"
            ts = t.get("spec") or {}
            if (t["metadata"].get("labels") or {}).get("strimzi.io/cluster") != kname:
                self.err(tw, f"label strimzi.io/cluster must be {kname}")
            if not DNS_SUBDOMAIN.match(t["metadata"]["name"]):
                self.err(tw, "metadata.name is not a DNS subdomain name")
            topic = ts.get("topicName") or t["metadata"]["name"]
            names.append(topic)
            if not (isinstance(ts.get("partitions"), int) and ts["partitions"] >= 1):
                self.err(tw, f"spec.partitions {ts.get('partitions')!r}: at least 1")
            r = ts.get("replicas")
            if not (isinstance(r, int) and 1 <= r <= max(brokers, 1)):
                self.err(tw, f"spec.replicas {r!r}: between 1 and the {brokers} broker(s)")
            for key, want in TOPIC_CONFIG.get(topic, {}).items():
                got = (ts.get("config") or {}).get(key)
                if got is None or int(got) != want:
                    self.err(tw, f"spec.config.{key} must be {want} (kafka/topics.txt), is {got!r}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            self.err(where, f"topics declared twice: {dup}")
        missing = sorted(set(self.topics) - set(names))
        extra = sorted(set(names) - set(self.topics))
        if missing:
            self.err(where, f"no KafkaTopic for {missing} (kafka/topics.txt)")
        if extra:
            self.err(where, f"KafkaTopics {extra} are not in kafka/topics.txt")
        for topic, config in TOPIC_CONFIG.items():
            for key in config:
                if f"{key}=" not in self._read("kafka/topics.txt"):
                    self.err(where, f"kafka/topics.txt no longer mentions {key} for {topic}: update TOPIC_CONFIG")

        # The services' bootstrap address is this cluster's plain listener.
        ns = kafka["metadata"].get("namespace", NAMESPACE)
        host = f"{kname}-kafka-bootstrap"
        accepted = {f"{h}:{p}" for p in plain_ports for h in (host, f"{host}.{ns}", f"{host}.{ns}.svc", f"{host}.{ns}.svc.cluster.local")}
        if not plain_ports:
            self.err(kw, "no internal listener without TLS and authentication for the services (they speak plain Kafka)")
        for cm in self.by_kind.get("ConfigMap", {}).values():
            brokers_env = (cm.get("data") or {}).get("MEDBOOK_KAFKA__BROKERS")
            if brokers_env is not None and plain_ports:
                for b in brokers_env.split(","):
                    if b.strip() not in accepted:
                        self.err(f"{self.name}: {self.ident(cm)}", f"MEDBOOK_KAFKA__BROKERS {b.strip()!r} is not the bootstrap Service of Kafka/{kname} ({host}:{plain_ports[0]})")

    def _check_storage(self, where: str, storage: Any) -> None:
        if not isinstance(storage, dict) or storage.get("type") not in ("ephemeral", "persistent-claim", "jbod"):
            self.err(where, "spec.storage.type must be ephemeral, persistent-claim or jbod")
            return
        vols = [storage] if storage["type"] != "jbod" else storage.get("volumes")
        if not isinstance(vols, list) or not vols:
            self.err(where, "jbod storage needs spec.storage.volumes")
            return
        ids, shared = set(), 0
        for v in vols:
            if storage["type"] == "jbod":
                if not isinstance(v.get("id"), int) or v["id"] in ids:
                    self.err(where, f"jbod volume id {v.get('id')!r}: unique integers")
                ids.add(v.get("id"))
                if v.get("type") not in ("ephemeral", "persistent-claim"):
                    self.err(where, f"jbod volume type {v.get('type')!r}")
            if v.get("type") == "persistent-claim" and not v.get("size"):
                self.err(where, "persistent-claim volumes need a size")
            if v.get("kraftMetadata") == "shared":
                shared += 1
        if shared > 1:
            self.err(where, "at most one volume may hold the KRaft metadata (kraftMetadata: shared)")

    # Workloads -----------------------------------------------------------------------

    def pod_templates(self) -> Iterable[tuple[dict, dict]]:
        for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            for d in self.by_kind.get(kind, {}).values():
                yield d, ((d.get("spec") or {}).get("template") or {})

    @staticmethod
    def service_of(container: dict) -> str | None:
        image = container.get("image", "")
        if image.startswith(IMAGE_PREFIX):
            svc = image[len(IMAGE_PREFIX):].split(":")[0].split("@")[0]
            return svc if svc in SERVICES else None
        return None

    def env_of(self, where: str, container: dict) -> dict[str, str | None]:
        """The container's environment: envFrom ConfigMaps and Secrets of this rendering,
        then env (a value from a Secret or ConfigMap key is looked up; None if unknown)."""
        env: dict[str, str | None] = {}
        for src in container.get("envFrom") or []:
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in src:
                    obj = self.by_kind.get(kind, {}).get(src[ref]["name"])
                    if obj is None:
                        self.err(where, f"envFrom {kind} {src[ref]['name']} is not in the rendering")
                        continue
                    env.update(self.values(obj))
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            vf = e.get("valueFrom") or {}
            for kind, ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if ref in vf:
                    obj = self.by_kind.get(kind, {}).get(vf[ref]["name"])
                    vals = self.values(obj) if obj else {}
                    if vf[ref]["key"] not in vals:
                        self.err(where, f"env {e['name']}: {kind} {vf[ref]['name']} key {vf[ref]['key']} is not in the rendering")
                    env[e["name"]] = vals.get(vf[ref]["key"])
                    break
            else:
                env[e["name"]] = None
        return env

    @staticmethod
    def values(obj: dict) -> dict[str, str]:
        vals = {}
        for k, v in (obj.get("data") or {}).items():
            if obj.get("kind") == "Secret":
                try:
                    v = base64.b64decode(v).decode()
                except (binascii.Error, UnicodeDecodeError):
                    v = ""
            vals[k] = str(v)
        for k, v in (obj.get("stringData") or {}).items():
            vals[k] = str(v)
        return vals

    def check_workloads(self) -> None:
        seen_deploy: dict[str, dict] = {}
        seen_jobs: dict[str, dict] = {}
        for obj, tmpl in self.pod_templates():
            ow = f"{self.name}: {self.ident(obj)}"
            pod = tmpl.get("spec") or {}
            long_running = obj["kind"] != "Job"
            psc = pod.get("securityContext") or {}
            if psc.get("runAsNonRoot") is not True:
                self.err(ow, "pod securityContext.runAsNonRoot must be true")
            for c in pod.get("initContainers") or []:
                self.check_container(ow, c, probes=False)
            for c in pod.get("containers") or []:
                self.check_container(ow, c, probes=long_running)
                svc = self.service_of(c)
                if not svc:
                    continue
                if self.name != "base" and ":" not in c["image"].split("/")[-1] and "@" not in c["image"]:
                    self.err(ow, f"image {c['image']} has no tag: set it with kustomize `images:`")
                if obj["kind"] == "Deployment":
                    seen_deploy[svc] = obj
                    self.check_service_container(ow, svc, pod, c)
                elif obj["kind"] == "Job":
                    seen_jobs[svc] = obj
                    cmd = (c.get("command") or []) + (c.get("args") or [])
                    if cmd[-1:] != ["migrate"]:
                        self.err(ow, f"a Job running {svc} must run `{svc} migrate` (runs {cmd})")
                    # Resolving the environment reports envFrom / valueFrom references
                    # missing from the rendering.
                    self.env_of(f"{ow} container {c.get('name')}", c)
            for c in pod.get("initContainers") or []:
                if self.service_of(c):
                    self.env_of(f"{ow} container {c.get('name')}", c)
        for svc in SERVICES:
            if svc not in seen_deploy:
                self.err(self.name, f"no Deployment running {IMAGE_PREFIX}{svc}")
            if svc not in seen_jobs:
                self.err(self.name, f"no migration Job for {svc}")
            elif svc in seen_deploy:
                dep_c = self._main(seen_deploy[svc], svc)
                job_c = self._main(seen_jobs[svc], svc)
                if dep_c and job_c and (dep_c.get("envFrom") != job_c.get("envFrom") or dep_c.get("env") != job_c.get("env")):
                    self.err(f"{self.name}: {self.ident(seen_jobs[svc])}", f"configuration (envFrom, env) differs from Deployment/{seen_deploy[svc]['metadata']['name']}")
                if dep_c and job_c and dep_c.get("image") != job_c.get("image"):
                    self.err(f"{self.name}: {self.ident(seen_jobs[svc])}", "image differs from the Deployment's")
            self.check_policies(svc, seen_deploy.get(svc))

    def _main(self, obj: dict, svc: str) -> dict | None:
        for c in obj["spec"]["template"]["spec"].get("containers") or []:
            if self.service_of(c) == svc:
                return c
        return None

    def check_container(self, ow: str, c: dict, probes: bool) -> None:
        cw = f"{ow} container {c.get('name')}"
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    self.err(cw, f"resources.{part}.{r} unset")
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            self.err(cw, "securityContext.allowPrivilegeEscalation must be false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            self.err(cw, "securityContext.capabilities.drop must contain ALL")
        if sc.get("readOnlyRootFilesystem") is not True:
            self.err(cw, "securityContext.readOnlyRootFilesystem must be true (mount an emptyDir where it writes)")
        if sc.get("privileged"):
            self.err(cw, "privileged")
        ports = c.get("ports") or []
        names = {p.get("name") for p in ports if p.get("name")}
        numbers = {p.get("containerPort") for p in ports}
        if probes:
            for kind in ("readinessProbe", "livenessProbe"):
                if kind not in c:
                    self.err(cw, f"no {kind}")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if not probe:
                continue
            for handler in ("httpGet", "tcpSocket", "grpc"):
                if handler not in probe:
                    continue
                port = probe[handler].get("port")
                if isinstance(port, str):
                    if port not in names:
                        self.err(cw, f"{kind}.{handler}.port {port!r} is not a port the container declares ({sorted(names)})")
                elif port not in numbers:
                    self.err(cw, f"{kind}.{handler}.port {port!r} is not a containerPort of the container ({sorted(numbers)})")

    def check_service_container(self, ow: str, svc: str, pod: dict, c: dict) -> None:
        cw = f"{ow} container {c.get('name')}"
        env = self.env_of(cw, c)
        if pod.get("enableServiceLinks") is not False:
            self.err(ow, "enableServiceLinks must be false (Service links would inject MEDBOOK_…_PORT variables, read as settings)")
        if env.get("MEDBOOK_DATABASE__RUN_MIGRATIONS") != "false":
            self.err(cw, "MEDBOOK_DATABASE__RUN_MIGRATIONS must be \"false\" (migrations run in the Job / init container)")
        # Listen addresses and the declared ports.
        by_name = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        for key, port_name in LISTENERS[svc].items():
            addr = env.get(key)
            if addr is None:
                self.err(cw, f"{key} unset: the default listens on 127.0.0.1 only")
                continue
            host, _, port = addr.rpartition(":")
            if host != "0.0.0.0":
                self.err(cw, f"{key}={addr}: must listen on 0.0.0.0 to be reachable in the pod network")
            if port_name not in by_name:
                self.err(cw, f"no container port named {port_name} for {key}")
            elif not port.isdigit() or int(port) != by_name[port_name]:
                self.err(cw, f"{key}={addr} but the container port {port_name} is {by_name[port_name]}")
        if svc == "booking-service" and env.get("MEDBOOK_GRPC__ENABLED", "true") != "true":
            self.err(cw, "MEDBOOK_GRPC__ENABLED is not true, but the Service and the probes use the gRPC port")
        # Probes target the operators' ports only.
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            for handler, action in (c.get(kind) or {}).items():
                if not isinstance(action, dict) or "port" not in action:
                    continue
                port = action["port"]
                pname = port if isinstance(port, str) else next((n for n, p in by_name.items() if p == port), None)
                if pname not in PROBE_PORTS[svc]:
                    self.err(cw, f"{kind} targets port {port!r}; probes belong on {sorted(PROBE_PORTS[svc])}")
        # Shutdown: preStop sleep + the service's grace within the termination grace.
        pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
        sleep = None
        if "sleep" in pre:
            sleep = pre["sleep"].get("seconds")
        elif "exec" in pre:
            m = re.search(r"\bsleep\s+(\d+)", " ".join(pre["exec"].get("command") or []))
            sleep = int(m.group(1)) if m else None
        if not isinstance(sleep, int):
            self.err(cw, "no lifecycle.preStop sleep (the pod must leave the endpoints before SIGTERM)")
            sleep = 0
        grace = self.grace[svc]
        if svc == "booking-service" and env.get("MEDBOOK_HTTP__SHUTDOWN_GRACE_SECS"):
            grace = int(env["MEDBOOK_HTTP__SHUTDOWN_GRACE_SECS"])
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        if not tgps > sleep + grace:
            self.err(ow, f"terminationGracePeriodSeconds {tgps} must exceed preStop {sleep} s + shutdown grace {grace} s")

    def check_policies(self, svc: str, deploy: dict | None) -> None:
        labels = ((deploy or {}).get("spec", {}).get("template", {}).get("metadata") or {}).get("labels") or {}
        pdbs = [p for p in self.by_kind.get("PodDisruptionBudget", {}).values()
                if deploy and self.selects((p.get("spec") or {}).get("selector"), labels)]
        if deploy and not pdbs:
            self.err(self.name, f"no PodDisruptionBudget selects the {svc} pods")
        if svc == "booking-service" and deploy:
            hpas = [h for h in self.by_kind.get("HorizontalPodAutoscaler", {}).values()
                    if (h["spec"].get("scaleTargetRef") or {}).get("name") == deploy["metadata"]["name"]]
            if not hpas:
                self.err(self.name, "no HorizontalPodAutoscaler for booking-service")
            for h in hpas:
                if not any((m.get("resource") or {}).get("name") == "cpu" for m in h["spec"].get("metrics") or []):
                    self.err(f"{self.name}: {self.ident(h)}", "does not scale on CPU")
                if (h["spec"].get("minReplicas") or 1) > h["spec"]["maxReplicas"]:
                    self.err(f"{self.name}: {self.ident(h)}", "minReplicas > maxReplicas")
            if "replicas" in deploy["spec"]:
                self.err(f"{self.name}: {self.ident(deploy)}", "spec.replicas set while an HPA owns the count (each apply would reset it)")

    @staticmethod
    def selects(selector: dict | None, labels: dict) -> bool:
        if not selector:
            return False
        if selector.get("matchExpressions"):
            return False
        ml = selector.get("matchLabels") or {}
        return bool(ml) and all(labels.get(k) == v for k, v in ml.items())

    # Services ------------------------------------------------------------------------

    def check_services(self) -> None:
        templates = [t for _, t in self.pod_templates()]
        for s in self.by_kind.get("Service", {}).values():
            sw = f"{self.name}: {self.ident(s)}"
            sel = (s.get("spec") or {}).get("selector") or {}
            pods = [t for t in templates if sel and all(((t.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in sel.items())]
            if not pods:
                self.err(sw, f"selector {sel} matches no pod template")
                continue
            for p in s["spec"].get("ports") or []:
                tp = p.get("targetPort", p.get("port"))
                for t in pods:
                    declared = [(q.get("name"), q.get("containerPort")) for c in t["spec"].get("containers") or [] for q in c.get("ports") or []]
                    if not any(tp in (n, num) for n, num in declared):
                        self.err(sw, f"port {p.get('name')}: targetPort {tp!r} is not declared by the selected containers")

    # Monitoring per pod --------------------------------------------------------------

    @staticmethod
    def _sanitize(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", name)

    def discovered_targets(self, obj: dict, tmpl: dict, phase: str, index: int) -> list[dict[str, str]]:
        """The targets Prometheus's Kubernetes discovery (role pod) offers for one pod of
        this template: one per declared container port, one per container without
        ports, with the __meta_kubernetes_pod_* labels (pod IP and name made up)."""
        meta = tmpl.get("metadata") or {}
        pod = tmpl.get("spec") or {}
        ns = (obj.get("metadata") or {}).get("namespace") or ""
        ip = f"10.244.{len(self.docs) % 250}.{index + 1}"
        base = {
            "__meta_kubernetes_namespace": ns,
            "__meta_kubernetes_pod_name": f"{obj['metadata']['name']}-7d9f8-{index:05d}",
            "__meta_kubernetes_pod_ip": ip,
            "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_ready": "true" if phase == "Running" else "false",
            "__meta_kubernetes_pod_node_name": "minikube",
            "__meta_kubernetes_pod_host_ip": "192.168.49.2",
            "__meta_kubernetes_pod_uid": f"uid-{index}",
            "__meta_kubernetes_pod_controller_kind": "ReplicaSet" if obj["kind"] == "Deployment" else obj["kind"],
            "__meta_kubernetes_pod_controller_name": obj["metadata"]["name"],
        }
        for k, v in (meta.get("labels") or {}).items():
            base[f"__meta_kubernetes_pod_label_{self._sanitize(k)}"] = str(v)
            base[f"__meta_kubernetes_pod_labelpresent_{self._sanitize(k)}"] = "true"
        for k, v in (meta.get("annotations") or {}).items():
            base[f"__meta_kubernetes_pod_annotation_{self._sanitize(k)}"] = str(v)
            base[f"__meta_kubernetes_pod_annotationpresent_{self._sanitize(k)}"] = "true"
        targets = []
        for init, containers in (("true", pod.get("initContainers") or []), ("false", pod.get("containers") or [])):
            for c in containers:
                cl = dict(base)
                cl.update({
                    "__meta_kubernetes_pod_container_name": c.get("name", ""),
                    "__meta_kubernetes_pod_container_image": c.get("image", ""),
                    "__meta_kubernetes_pod_container_init": init,
                })
                ports = c.get("ports") or []
                if not ports:
                    targets.append(dict(cl, __address__=ip))
                for port in ports:
                    targets.append(dict(
                        cl,
                        __address__=f"{ip}:{port.get('containerPort')}",
                        __meta_kubernetes_pod_container_port_name=str(port.get("name", "")),
                        __meta_kubernetes_pod_container_port_number=str(port.get("containerPort")),
                        __meta_kubernetes_pod_container_port_protocol=str(port.get("protocol", "TCP")),
                    ))
        return targets

    @staticmethod
    def relabel(labels: dict[str, str], configs: list[dict]) -> dict[str, str] | None:
        """Prometheus's relabeling of one target (None: dropped), for the actions of
        RELABEL_ACTIONS; regexes are anchored at both ends, as Prometheus's are."""
        labels = dict(labels)
        for rc in configs:
            action = rc.get("action", "replace")
            regex = re.compile(rf"^(?:{rc.get('regex', '(.*)')})$")
            value = rc.get("separator", ";").join(labels.get(n, "") for n in rc.get("source_labels") or [])
            target = rc.get("target_label")
            if action == "keep" and not regex.match(value):
                return None
            if action == "drop" and regex.match(value):
                return None
            if action == "keepequal" and value != labels.get(target, ""):
                return None
            if action == "dropequal" and value == labels.get(target, ""):
                return None
            if action == "replace":
                m = regex.match(value)
                if m:
                    repl = str(rc.get("replacement", "$1"))
                    repl = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda g: "\\g<" + (g.group(1) or g.group(2)) + ">", repl)
                    new = m.expand(repl)
                    name = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                                  lambda g: m.group(int(g.group(1) or g.group(2))) if (g.group(1) or g.group(2)).isdigit()
                                  else m.group(g.group(1) or g.group(2)),
                                  target or "") or ""
                    if new == "":
                        labels.pop(name, None)
                    elif name:
                        labels[name] = new
            if action in ("lowercase", "uppercase") and target:
                labels[target] = value.lower() if action == "lowercase" else value.upper()
            if action == "labelmap":
                repl = str(rc.get("replacement", "$1"))
                for k, v in list(labels.items()):
                    m = regex.match(k)
                    if m:
                        labels[m.expand(re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", repl))] = v
            if action == "labeldrop":
                labels = {k: v for k, v in labels.items() if not regex.match(k)}
            if action == "labelkeep":
                labels = {k: v for k, v in labels.items() if regex.match(k)}
        return labels

    def scrape_targets(self, objs_and_templates, phase: str, replicas: int = 2) -> list[tuple[dict, dict[str, str]]]:
        """(workload, final target labels) of every target the jobs of
        prometheus-kubernetes.yml keep, `replicas` pods per template in `phase`."""
        found = []
        for job in self.prometheus.get("scrape_configs") or []:
            sds = [sd for sd in job.get("kubernetes_sd_configs") or [] if sd.get("role") == "pod"]
            if not sds:
                continue
            for obj, tmpl in objs_and_templates:
                ns = (obj.get("metadata") or {}).get("namespace")
                if not any(not (sd.get("namespaces") or {}).get("names") or ns in sd["namespaces"]["names"] for sd in sds):
                    continue
                for i in range(replicas):
                    for t in self.discovered_targets(obj, tmpl, phase, i):
                        t = dict(t, job=job["job_name"], __metrics_path__=job.get("metrics_path", "/metrics"),
                                 __scheme__=job.get("scheme", "http"))
                        out = self.relabel(t, job.get("relabel_configs") or [])
                        if out is None:
                            continue
                        final = {k: v for k, v in out.items() if not k.startswith("__")}
                        final.setdefault("instance", out.get("__address__", ""))
                        final["__address__"] = out.get("__address__", "")
                        final["__metrics_path__"] = out.get("__metrics_path__", "")
                        found.append((obj, final))
        return found

    def check_monitoring(self) -> None:
        templates = list(self.pod_templates())
        deployments = {}
        for obj, tmpl in templates:
            for c in (tmpl.get("spec") or {}).get("containers") or []:
                svc = self.service_of(c)
                if svc and obj["kind"] == "Deployment":
                    deployments[svc] = (obj, tmpl, c)
        # The annotations the discovery reads.
        for svc, (obj, tmpl, c) in deployments.items():
            ow = f"{self.name}: {self.ident(obj)}"
            ann = (tmpl.get("metadata") or {}).get("annotations") or {}
            ops = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}.get("ops")
            if ann.get("prometheus.io/scrape") != "true":
                self.err(ow, 'pod template: annotation prometheus.io/scrape must be "true" (Prometheus scrapes every pod)')
            if ann.get("prometheus.io/port") != str(ops):
                self.err(ow, f"pod template: annotation prometheus.io/port is {ann.get('prometheus.io/port')!r}, "
                         f"not the ops container port {ops!r}")
            if not str(ann.get("prometheus.io/path", "")).startswith("/"):
                self.err(ow, "pod template: annotation prometheus.io/path must be the metrics path")
        # Replayed discovery: running (and starting) pods.
        for phase in SCRAPED_PHASES:
            found = self.scrape_targets(templates, phase)
            for obj, labels in found:
                ow = f"{self.name}: {self.ident(obj)} ({phase} pod)"
                svc = next((self.service_of(c) for c in obj["spec"]["template"]["spec"].get("containers") or []
                            if self.service_of(c)), None)
                if obj["kind"] != "Deployment" or svc is None:
                    self.err(ow, f"scraped by job {labels.get('job')} of {PROMETHEUS_K8S_CONFIG}: only the services' Deployments' pods are")
                    continue
                if labels.get("job") != svc:
                    self.err(ow, f"scraped by job {labels.get('job')}, not {svc}")
                for label in ("pod", "namespace"):
                    if not labels.get(label):
                        self.err(ow, f"job {labels.get('job')}: its targets have no {label} label")
                if labels.get("namespace") and labels["namespace"] != obj["metadata"].get("namespace"):
                    self.err(ow, f"job {labels.get('job')}: label namespace {labels['namespace']!r}")
            for svc, (obj, tmpl, c) in deployments.items():
                ow = f"{self.name}: {self.ident(obj)} ({phase} pods)"
                mine = [lab for o, lab in found if o is obj]
                ops = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}.get("ops")
                pods = sorted({lab.get("pod") for lab in mine})
                if len(mine) != 2 or len(pods) != 2:
                    self.err(ow, f"two pods give {len(mine)} target(s) of {PROMETHEUS_K8S_CONFIG} "
                             f"({', '.join(sorted(lab.get('instance', '?') for lab in mine)) or 'none'}); "
                             "expected one per pod")
                    continue
                for lab in mine:
                    if not lab["__address__"].endswith(f":{ops}"):
                        self.err(ow, f"target {lab['__address__']}: not the ops port {ops}")
                    if lab["instance"] != lab["__address__"]:
                        self.err(ow, f"instance {lab['instance']!r} is not the pod address {lab['__address__']}")
                    ann_path = ((tmpl.get("metadata") or {}).get("annotations") or {}).get("prometheus.io/path")
                    if ann_path and lab["__metrics_path__"] != ann_path:
                        self.err(ow, f"metrics path {lab['__metrics_path__']}, the annotation says {ann_path}")
        for phase in DONE_PHASES:
            for obj, labels in self.scrape_targets(templates, phase):
                self.err(f"{self.name}: {self.ident(obj)} ({phase} pod)",
                         f"a finished pod is still a target of job {labels.get('job')}")
        self.check_prometheus_server()

    def check_prometheus_server(self) -> None:
        """Where the rendering runs Prometheus: the configuration and rules it mounts are
        the repository's, and its ServiceAccount may read pods in the namespace."""
        servers = [(obj, tmpl) for obj, tmpl in self.pod_templates()
                   for c in (tmpl.get("spec") or {}).get("containers") or []
                   if str(c.get("image", "")).split(":")[0].split("@")[0] == PROMETHEUS_IMAGE]
        if not servers:
            return
        config_maps = self.by_kind.get("ConfigMap", {})
        expected_config = self._read(PROMETHEUS_K8S_CONFIG)
        rules_dir = self.repo / PROMETHEUS_RULES_DIR
        expected_rules = {f.name: f.read_text() for f in sorted(rules_dir.glob("*.yml"))}
        for obj, tmpl in servers:
            ow = f"{self.name}: {self.ident(obj)}"
            pod = tmpl.get("spec") or {}
            volumes = {v.get("name"): v for v in pod.get("volumes") or []}
            c = next(c for c in pod.get("containers") or [] if str(c.get("image", "")).startswith(PROMETHEUS_IMAGE))
            args = " ".join((c.get("command") or []) + (c.get("args") or []))
            m = re.search(r"--config\.file[= ](\S+)", args)
            config_file = m.group(1) if m else "/etc/prometheus/prometheus.yml"
            config_dir = config_file.rsplit("/", 1)[0]
            mounts = {vm.get("mountPath"): vm for vm in c.get("volumeMounts") or []}

            def config_map_at(path):
                """(ConfigMap, key or None) mounted at path (a file through subPath or a
                directory)."""
                vm = mounts.get(path)
                if vm is None:
                    return None, None
                cm_name = ((volumes.get(vm.get("name")) or {}).get("configMap") or {}).get("name")
                return config_maps.get(cm_name), vm.get("subPath")

            cm, key = config_map_at(config_file)
            if cm is None or key is None:
                self.err(ow, f"{config_file} is not a ConfigMap key mounted with subPath")
            elif self.values(cm).get(key) != expected_config:
                self.err(ow, f"ConfigMap/{cm['metadata']['name']} key {key} differs from {PROMETHEUS_K8S_CONFIG}")
            cm, _ = config_map_at(f"{config_dir}/rules")
            if cm is None:
                self.err(ow, f"no ConfigMap mounted at {config_dir}/rules (rule_files: rules/*.yml)")
            else:
                got = self.values(cm)
                if set(got) != set(expected_rules):
                    self.err(ow, f"ConfigMap/{cm['metadata']['name']} holds {sorted(got)}, "
                             f"{PROMETHEUS_RULES_DIR} has {sorted(expected_rules)} "
                             "(list every rules file in deploy/prometheus/kustomization.yaml)")
                for k in sorted(set(got) & set(expected_rules)):
                    if got[k] != expected_rules[k]:
                        self.err(ow, f"ConfigMap/{cm['metadata']['name']} key {k} differs from {PROMETHEUS_RULES_DIR}/{k}")
            # The discovery's permissions.
            if pod.get("automountServiceAccountToken") is False:
                self.err(ow, "automountServiceAccountToken is false: pod discovery needs the token")
            sa = pod.get("serviceAccountName") or "default"
            if sa not in self.by_kind.get("ServiceAccount", {}) and sa != "default":
                self.err(ow, f"ServiceAccount {sa} is not in the rendering")
            ns = obj["metadata"].get("namespace")
            allowed = set()
            for rb in self.by_kind.get("RoleBinding", {}).values():
                if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa
                           and s.get("namespace", ns) == ns for s in rb.get("subjects") or []):
                    continue
                ref = rb.get("roleRef") or {}
                role = self.by_kind.get(ref.get("kind", ""), {}).get(ref.get("name"))
                for rule in (role or {}).get("rules") or []:
                    if "" in (rule.get("apiGroups") or []) and set(rule.get("resources") or []) & {"pods", "*"}:
                        allowed |= set(rule.get("verbs") or [])
            missing = {"get", "list", "watch"} - allowed - ({"get", "list", "watch"} if "*" in allowed else set())
            if missing:
                self.err(ow, f"ServiceAccount {sa} may not {', '.join(sorted(missing))} pods in {ns} "
                         "(a Role and RoleBinding for the pod discovery)")
            for job in self.prometheus.get("scrape_configs") or []:
                for sd in job.get("kubernetes_sd_configs") or []:
                    names = (sd.get("namespaces") or {}).get("names")
                    if names and ns not in names:
                        self.err(ow, f"{PROMETHEUS_K8S_CONFIG} job {job.get('job_name')} discovers pods in {names}, "
                                 f"not in {ns}, where the services run")

    # Secrets -------------------------------------------------------------------------

    def check_secrets(self) -> None:
        pg = self.by_kind.get("Secret", {}).get("postgres-credentials")
        pg_vals = self.values(pg) if pg else None
        for s in self.by_kind.get("Secret", {}).values():
            sw = f"{self.name}: {self.ident(s)}"
            vals = self.values(s)
            placeholder = ((s["metadata"].get("annotations") or {}).get(PLACEHOLDER_ANNOTATION)) == "true"
            if placeholder:
                for k, v in vals.items():
                    if PLACEHOLDER_MARK not in v:
                        self.err(sw, f"{k}: a placeholder Secret's values must contain {PLACEHOLDER_MARK}")
                continue
            for k, v in vals.items():
                if PLACEHOLDER_MARK in v:
                    self.err(sw, f"{k} still holds a placeholder")
            if "MEDBOOK_AUTH__JWT_SECRET" in vals and len(vals["MEDBOOK_AUTH__JWT_SECRET"].encode()) < 32:
                self.err(sw, "MEDBOOK_AUTH__JWT_SECRET is shorter than 32 bytes")
            if "MEDBOOK_AUDIT__SIGNING_KEY" in vals:
                try:
                    seed = base64.b64decode(vals["MEDBOOK_AUDIT__SIGNING_KEY"].strip(), validate=True)
                except binascii.Error:
                    seed = b""
                if len(seed) != 32:
                    self.err(sw, "MEDBOOK_AUDIT__SIGNING_KEY is not the base64 of a 32-byte ed25519 seed")
            if "token" in vals and s["metadata"]["name"] in AUDIT_TOKEN_SECRETS and len(vals["token"]) < 16:
                self.err(sw, "the audit token is shorter than 16 characters")
            url = vals.get("MEDBOOK_DATABASE__URL")
            if url is not None:
                u = urlsplit(url)
                if u.scheme not in ("postgres", "postgresql") or not u.hostname or not u.path.strip("/"):
                    self.err(sw, "MEDBOOK_DATABASE__URL is not a postgres://user:password@host:port/database URL")
                elif pg_vals and u.hostname == "postgres":
                    if u.username != pg_vals.get("POSTGRES_USER") or u.password != pg_vals.get("POSTGRES_PASSWORD"):
                        self.err(sw, "MEDBOOK_DATABASE__URL's user or password differs from Secret/postgres-credentials")
            redis = vals.get("MEDBOOK_REDIS__URL")
            if redis is not None and not redis.startswith(("redis://", "rediss://")):
                self.err(sw, "MEDBOOK_REDIS__URL must start with redis:// or rediss://")
        tokens = [self.values(s).get("token") for name, s in self.by_kind.get("Secret", {}).items()
                  if name in AUDIT_TOKEN_SECRETS]
        if len(tokens) == 2 and tokens[0] is not None and tokens[0] == tokens[1]:
            self.err(self.name, "Secrets " + " and ".join(AUDIT_TOKEN_SECRETS)
                     + " hold the same token: the writer could read the audit log and readers append to it")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--k8s-version", action="append", required=True)
    ap.add_argument("renderings", nargs="+", help="NAME=PATH of a `kubectl kustomize` output")
    args = ap.parse_args()
    checker = Checker(args.repo.resolve(), args.k8s_version)
    for item in args.renderings:
        name, _, path = item.partition("=")
        checker.check(name, Path(path))
    for note in checker.notes:
        print(f"checked {note}")
    for e in checker.errors:
        print(f"error: {e}")
    if checker.errors:
        print(f"{len(checker.errors)} problem(s) in the Kubernetes manifests")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
