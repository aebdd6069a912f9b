"""The deployments against the code: every medbook container of the rendered
docker-compose file and Kubernetes manifests is run through its own binary's
`check-config` with exactly the environment the deployment gives it, and what the binary
answers (listeners, probe paths, gRPC services, topics) is compared with the ports,
probes, health checks, Services, scrape targets and topics the deployment declares
(docker-compose: the static targets of deploy/prometheus/prometheus.yml; Kubernetes: the
pods' prometheus.io/ annotations, which deploy/prometheus/prometheus-kubernetes.yml's
pod discovery follows).

Usage: check_topology.py --bin target/debug --repo . [--compose FILE] [--k8s NAME=FILE ...]

Exits 1 naming every mismatch. Needs PyYAML.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

SERVICES = ("booking-service", "notification-service", "audit-service")
problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])


def host_of(addr):
    return str(addr).rsplit(":", 1)[0]


def topics_file(repo):
    names = []
    with open(os.path.join(repo, "kafka", "topics.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                names.append(line.split()[0])
    return names


class Checker:
    """Runs a binary's check-config as its image would: working directory with
    config/<service>.yml, nothing in the environment but what the deployment sets."""

    def __init__(self, bin_dir, repo):
        self.bin_dir = bin_dir
        self.repo = repo
        self.cache = {}

    def report(self, service, env):
        key = (service, tuple(sorted(env.items())))
        if key in self.cache:
            return self.cache[key]
        binary = os.path.abspath(os.path.join(self.bin_dir, service))
        if not os.access(binary, os.X_OK):
            sys.exit(f"error: {binary} is missing: build the services first")
        with tempfile.TemporaryDirectory() as work:
            os.makedirs(os.path.join(work, "config"))
            shutil.copy(
                os.path.join(self.repo, "config", f"{service}.yml"),
                os.path.join(work, "config", f"{service}.yml"),
            )
            run_env = {"PATH": "/usr/bin:/bin", "HOME": work}
            run_env.update(env)
            done = subprocess.run(
                [binary, "check-config"],
                cwd=work,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = {"ok": False, "error": done.stderr.strip() or "no report", "unknown_keys": []}
        report["exit"] = done.returncode
        self.cache[key] = report
        return report


class Workload:
    """One medbook container: where it is declared, its binary, whether it serves, its
    environment, and what the deployment says of its ports and probes."""

    def __init__(self, where, service, command, env, placeholder):
        self.where = where
        self.service = service
        self.command = command
        self.env = env
        self.placeholder = placeholder
        self.ports = set()
        self.probes = []  # (kind, detail) for Kubernetes probes
        self.healthcheck = None  # compose health check test

    @property
    def serving(self):
        return self.command in (None, "serve")


def service_of_image(image):
    name = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return name if name in SERVICES else None


# --- docker-compose -------------------------------------------------------------------


def compose_workloads(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    workloads = []
    for name, svc in (doc.get("services") or {}).items():
        build_args = ((svc.get("build") or {}).get("args") or {}) if isinstance(svc.get("build"), dict) else {}
        service = build_args.get("SERVICE") or service_of_image(svc.get("image", ""))
        if service not in SERVICES:
            continue
        command = svc.get("command")
        if isinstance(command, str):
            command = command.split()
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        env = {k: "" if v is None else str(v) for k, v in env.items()}
        w = Workload(f"compose service {name}", service, command[0] if command else None, env, False)
        for p in svc.get("ports") or []:
            target = p.get("target") if isinstance(p, dict) else int(str(p).rsplit(":", 1)[-1].split("/")[0])
            w.ports.add(int(target))
            if isinstance(p, dict) and p.get("published") and p.get("host_ip") not in ("127.0.0.1", "::1"):
                problem(w.where, f"port {target} is published beyond localhost ({p.get('host_ip') or 'all interfaces'})")
        for p in svc.get("expose") or []:
            w.ports.add(int(str(p).split("/")[0]))
        w.healthcheck = (svc.get("healthcheck") or {}).get("test")
        workloads.append(w)
    return doc, workloads


# --- Kubernetes -----------------------------------------------------------------------


def k8s_objects(path):
    with open(path, encoding="utf-8") as f:
        return [o for o in yaml.safe_load_all(f) if o]


def secret_values(obj):
    values = {k: str(v) for k, v in (obj.get("stringData") or {}).items()}
    for k, v in (obj.get("data") or {}).items():
        values[k] = base64.b64decode(v).decode("utf-8")
    return values


def k8s_workloads(name, objects):
    config_maps = {o["metadata"]["name"]: {k: str(v) for k, v in (o.get("data") or {}).items()}
                   for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: secret_values(o) for o in objects if o["kind"] == "Secret"}
    placeholders = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"
                    and (o["metadata"].get("annotations") or {}).get("medbook.io/placeholder") == "true"}
    workloads = []
    for o in objects:
        if o["kind"] not in ("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"):
            continue
        spec = o["spec"]
        if o["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = spec["template"]["spec"]
        for c in (pod.get("initContainers") or []) + pod.get("containers", []):
            service = service_of_image(c.get("image", ""))
            if service is None:
                continue
            where = f"{name}: {o['kind']} {o['metadata']['name']} container {c['name']}"
            env, placeholder = {}, False
            for src in c.get("envFrom") or []:
                if "configMapRef" in src:
                    ref = src["configMapRef"]["name"]
                    if ref not in config_maps:
                        problem(where, f"envFrom ConfigMap {ref} is not in the rendering")
                    env.update(config_maps.get(ref, {}))
                if "secretRef" in src:
                    ref = src["secretRef"]["name"]
                    if ref not in secrets:
                        problem(where, f"envFrom Secret {ref} is not in the rendering")
                    env.update(secrets.get(ref, {}))
                    placeholder |= ref in placeholders
            for e in c.get("env") or []:
                if "value" in e:
                    env[e["name"]] = str(e["value"])
                    continue
                ref = (e.get("valueFrom") or {})
                if "configMapKeyRef" in ref:
                    r = ref["configMapKeyRef"]
                    if r["key"] not in config_maps.get(r["name"], {}):
                        problem(where, f"{e['name']}: ConfigMap {r['name']} has no key {r['key']}")
                    env[e["name"]] = config_maps.get(r["name"], {}).get(r["key"], "")
                elif "secretKeyRef" in ref:
                    r = ref["secretKeyRef"]
                    if r["key"] not in secrets.get(r["name"], {}):
                        problem(where, f"{e['name']}: Secret {r['name']} has no key {r['key']}")
                    env[e["name"]] = secrets.get(r["name"], {}).get(r["key"], "")
                    placeholder |= r["name"] in placeholders
            args = (c.get("command") or [])[1:] + (c.get("args") or []) if c.get("command") else (c.get("args") or [])
            w = Workload(where, service, args[0] if args else None, env, placeholder)
            named = {}
            for p in c.get("ports") or []:
                w.ports.add(int(p["containerPort"]))
                if "name" in p:
                    named[p["name"]] = int(p["containerPort"])
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if not probe:
                    continue
                if "httpGet" in probe:
                    port = probe["httpGet"]["port"]
                    w.probes.append((kind, "http", named.get(port, port), probe["httpGet"].get("path")))
                elif "grpc" in probe:
                    w.probes.append((kind, "grpc", probe["grpc"]["port"], probe["grpc"].get("service", "")))
                elif "exec" in probe:
                    w.probes.append((kind, "exec", None, " ".join(probe["exec"]["command"])))
                else:
                    w.probes.append((kind, "other", None, None))
            w.pod_labels = spec["template"]["metadata"].get("labels") or {}
            w.pod_annotations = spec["template"]["metadata"].get("annotations") or {}
            w.kind = o["kind"]
            w.named_ports = named
            workloads.append(w)
    return workloads, objects


# --- the checks -----------------------------------------------------------------------


def check_workload(w, report):
    if report.get("unknown_keys"):
        for k in report["unknown_keys"]:
            problem(w.where, f"{k.get('env') or k['key']} is not a setting of {w.service}")
    if report.get("error"):
        if w.placeholder:
            return None  # placeholder Secrets are meant to fail validation
        problem(w.where, f"{w.service} refuses this configuration: {report['error']}")
        return None
    if report["exit"] not in (0, 1):
        problem(w.where, f"check-config exited {report['exit']}")
        return None
    if not w.serving:
        return report
    listeners = report["listeners"]
    ports = {port_of(a) for a in listeners.values()}
    for key, addr in listeners.items():
        if host_of(addr) not in ("0.0.0.0", "[::]"):
            problem(w.where, f"{key} = {addr}: in a container it must listen on 0.0.0.0")
    for p in sorted(w.ports - ports):
        problem(w.where, f"declares port {p}, but {w.service} listens on {sorted(ports)}")
    probe_port = port_of(listeners[report["probes"]["listener"]])
    if w.where.startswith("compose"):
        test = " ".join(w.healthcheck or [])
        if f"/usr/local/bin/{w.service} healthcheck" not in test and f"{w.service} healthcheck" not in test:
            problem(w.where, f"health check `{test}` is not `{w.service} healthcheck`")
        return report
    for p in sorted(ports - w.ports):
        problem(w.where, f"{w.service} listens on {p}, which the container does not declare")
    paths = {"livenessProbe": report["probes"]["liveness"], "readinessProbe": report["probes"]["readiness"]}
    grpc = {port_of(listeners[k]): set(v) for k, v in report.get("grpc_services", {}).items()}
    if not any(kind == "livenessProbe" for kind, *_ in w.probes):
        problem(w.where, "no liveness probe")
    if not any(kind == "readinessProbe" for kind, *_ in w.probes):
        problem(w.where, "no readiness probe")
    for kind, how, port, detail in w.probes:
        if how == "http":
            if port != probe_port:
                problem(w.where, f"{kind} GETs port {port}; the probes are on {probe_port}")
            allowed = {paths.get(kind, detail), report["probes"]["liveness"], report["probes"]["readiness"]}
            if kind in paths and detail != paths[kind]:
                problem(w.where, f"{kind} path {detail}; {w.service} serves it at {paths[kind]}")
            elif detail not in allowed:
                problem(w.where, f"{kind} path {detail} is not a probe path of {w.service}")
        elif how == "grpc":
            if port not in grpc:
                problem(w.where, f"{kind} is a gRPC probe on {port}, not a gRPC listener ({sorted(grpc)})")
            elif detail and detail not in grpc[port]:
                problem(w.where, f"{kind} asks for gRPC service {detail}, not served on {port}")
        elif how == "exec":
            if f"{w.service} healthcheck" not in detail:
                problem(w.where, f"{kind} runs `{detail}`, not `{w.service} healthcheck`")
    return report


def check_k8s_services(name, objects, workloads):
    for svc in (o for o in objects if o["kind"] == "Service"):
        selector = svc["spec"].get("selector") or {}
        targets = [w for w in workloads if w.serving and selector
                   and all(getattr(w, "pod_labels", {}).get(k) == v for k, v in selector.items())]
        for w in targets:
            for p in svc["spec"].get("ports", []):
                target = p.get("targetPort", p["port"])
                number = w.named_ports.get(target, target)
                if number not in w.ports:
                    problem(f"{name}: Service {svc['metadata']['name']}",
                            f"port {p.get('name', p['port'])} targets {target}, which {w.where} does not declare")


def check_prometheus(repo, reports, where):
    with open(os.path.join(repo, "deploy", "prometheus", "prometheus.yml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for job in doc.get("scrape_configs", []):
        service = job["job_name"]
        if service not in reports:
            continue
        report = reports[service]
        metrics_port = port_of(report["listeners"][report["probes"]["listener"]])
        for sc in job.get("static_configs", []):
            for target in sc.get("targets", []):
                host, port = target.rsplit(":", 1)
                if host != service or int(port) != metrics_port:
                    problem(f"deploy/prometheus/prometheus.yml job {service}",
                            f"scrapes {target}; {where} serves /metrics at {service}:{metrics_port}")
        if job.get("metrics_path", "/metrics") != report["probes"]["metrics"]:
            problem(f"prometheus job {service}", f"metrics_path {job.get('metrics_path')}")


def check_k8s_scrape(repo, name, workloads, reports):
    """Kubernetes: Prometheus discovers each pod (prometheus-kubernetes.yml) and scrapes
    the port and path its pod template's annotations name: those must be where the
    binary serves /metrics."""
    with open(os.path.join(repo, "deploy", "prometheus", "prometheus-kubernetes.yml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    jobs = {j["job_name"]: j for j in doc.get("scrape_configs", [])}
    for w in workloads:
        if not w.serving or getattr(w, "kind", None) != "Deployment" or w.service not in reports:
            continue
        report = reports[w.service]
        metrics_port = port_of(report["listeners"][report["probes"]["listener"]])
        ann = w.pod_annotations
        if ann.get("prometheus.io/scrape") != "true":
            problem(w.where, "the pod template lacks prometheus.io/scrape: \"true\"")
        if ann.get("prometheus.io/port") != str(metrics_port):
            problem(w.where, f"prometheus.io/port is {ann.get('prometheus.io/port')!r}; "
                    f"{w.service} serves /metrics on {metrics_port}")
        path = ann.get("prometheus.io/path", jobs.get(w.service, {}).get("metrics_path", "/metrics"))
        if path != report["probes"]["metrics"]:
            problem(w.where, f"metrics path {path}; {w.service} serves it at {report['probes']['metrics']}")
        if w.service not in jobs:
            problem(f"{name}: deploy/prometheus/prometheus-kubernetes.yml", f"no job {w.service}")


def check_topics(where, reports, declared):
    used = set()
    for service in ("booking-service", "notification-service"):
        if service in reports:
            used |= set(reports[service]["topics"])
    if used and used != set(declared):
        problem(where, f"the services use topics {sorted(used)}; kafka/topics.txt has {sorted(declared)}")


def check_all(checker, workloads):
    """Checks each workload; returns the serving ones' reports by service."""
    reports = {}
    for w in workloads:
        report = check_workload(w, checker.report(w.service, w.env))
        if report and w.serving:
            reports[w.service] = report
    return reports


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--repo", default=".")
    ap.add_argument("--compose")
    ap.add_argument("--k8s", action="append", default=[], metavar="NAME=FILE")
    args = ap.parse_args()
    checker = Checker(args.bin, args.repo)
    declared = topics_file(args.repo)
    checked = 0

    if args.compose:
        doc, workloads = compose_workloads(args.compose)
        reports = check_all(checker, workloads)
        checked += len(workloads)
        for service in SERVICES:
            if not any(w.serving and w.service == service for w in workloads):
                problem("docker-compose.yml", f"no serving {service}")
        check_prometheus(args.repo, reports, "docker-compose")
        check_topics("docker-compose.yml", reports, declared)
        mounted = any(
            str((v.get("source") if isinstance(v, dict) else v.split(":")[0])).endswith("kafka/topics.txt")
            for svc in doc["services"].values() for v in svc.get("volumes") or []
        )
        if not mounted:
            problem("docker-compose.yml", "no service mounts kafka/topics.txt to create the topics")

    for spec in args.k8s:
        name, path = spec.split("=", 1)
        workloads, objects = k8s_workloads(name, k8s_objects(path))
        reports = check_all(checker, workloads)
        checked += len(workloads)
        for service in SERVICES:
            if not any(w.serving and w.service == service for w in workloads):
                problem(name, f"no serving {service}")
        check_k8s_services(name, objects, workloads)
        check_k8s_scrape(args.repo, name, workloads, reports)
        check_topics(name, reports, declared)
        kafka_topics = {o["spec"].get("topicName", o["metadata"]["name"])
                        for o in objects if o["kind"] == "KafkaTopic"}
        if kafka_topics and kafka_topics != set(declared):
            problem(name, f"KafkaTopics {sorted(kafka_topics)} differ from kafka/topics.txt {sorted(declared)}")

    if problems:
        for p in problems:
            print(f"FAIL {p}")
        sys.exit(1)
    print(f"ok   {checked} medbook containers: every MEDBOOK_* variable a setting of its service, "
          "listeners, ports, probes, health checks, Services, scrape targets and topics as the code has them")


if __name__ == "__main__":
    main()
