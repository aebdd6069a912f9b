#!/usr/bin/env python3
"""Static checks of docker-compose.yml, on the configuration `docker-compose config`
rendered (interpolated, anchors merged, paths absolute). scripts/compose-check.sh runs it.

What it checks, each failure printed on a line of its own:

* ports: every published port is bound to 127.0.0.1; one-shots publish none;
* restart: every service says; a one-shot is `restart: "no"`, anything else runs long;
* healthchecks: every long-running service has one (medbook's own call
  `/usr/local/bin/<service> healthcheck`);
* depends_on: every dependency names a condition that fits it (service_healthy: it has
  a healthcheck; service_completed_successfully: it is a one-shot);
* state: every writable bind mount lives under the data directory, every other bind
  mount is read-only, and there are no named or anonymous volumes;
* images: pinned tags (no `latest`); medbook's services are built from ./Dockerfile with
  SERVICE set to their name, as image medbook/<service>:local;
* medbook's services: only they set MEDBOOK_* variables; the listeners bind 0.0.0.0;
  the long-running services do not migrate at start-up and wait for their `migrate`
  one-shot; stop_grace_period exceeds http.shutdown_grace_secs;
* wiring: Prometheus's targets (deploy/prometheus/prometheus.yml) and Grafana's
  datasources are services of this file on the ports they listen on, and the dashboard
  provider's path is mounted into Grafana;
* the env file: every `${VAR:?…}` of docker-compose.yml has a value there.

Whether each MEDBOOK_* variable is a setting of its service, and the configuration
valid, is not checked here: scripts/deploy-check.sh (scripts/deploy/check_topology.py)
runs each service's own `check-config` with the environment this file gives it.

Exits 0 when everything passes, 1 otherwise. Needs PyYAML.
"""

import argparse
import os
import re
import sys

import yaml

MEDBOOK = ("booking-service", "notification-service", "audit-service")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

failures = []


def fail(message):
    failures.append(message)


# ------------------------------------------------------------------ helpers


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def deps_of(service):
    """depends_on as {service: condition or None}; the list form has no conditions."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {dep: None for dep in deps}
    return {dep: (spec or {}).get("condition") for dep, spec in deps.items()}


def is_one_shot(service):
    return str(service.get("restart", "")) == "no"


def duration_secs(text):
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text)):
        total += float(number) * units[unit]
    return total


def parse_port(entry):
    """(host_ip, published, target) of a rendered port, short or long syntax."""
    if isinstance(entry, dict):
        return entry.get("host_ip", ""), str(entry.get("published", "")), str(entry.get("target"))
    parts = str(entry).split("/")[0].split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return "", "", parts[0]


def parse_volume(entry):
    """(type, source, target, read_only) of a rendered volume, short or long syntax."""
    if isinstance(entry, dict):
        return (entry.get("type", "volume"), entry.get("source"), entry.get("target"),
                bool(entry.get("read_only")))
    parts = str(entry).split(":")
    if len(parts) == 1:
        return "volume", None, parts[0], False
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) > 2 else "rw"
    kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
    return kind, source, target, "ro" in mode.split(",")


def inside(path, directory):
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory + os.sep)


def read_env_file(path):
    values = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


# ------------------------------------------------------------------ checks


def check_services(services, root, data_dir):
    for name, svc in sorted(services.items()):
        restart = svc.get("restart")
        if restart is None:
            fail(f"{name}: no restart policy (one-shots: restart: \"no\")")
        one_shot = is_one_shot(svc)

        for entry in svc.get("ports") or []:
            host_ip, published, target = parse_port(entry)
            if one_shot:
                fail(f"{name}: a one-shot publishes port {target}")
            if host_ip != "127.0.0.1":
                fail(f"{name}: port {published}:{target} is published on "
                     f"{host_ip or 'every interface'}, not 127.0.0.1")

        health = svc.get("healthcheck") or {}
        if not one_shot and (not health.get("test") or health.get("disable")):
            fail(f"{name}: long-running but no healthcheck")

        for dep, condition in deps_of(svc).items():
            target = services.get(dep)
            if target is None:
                fail(f"{name}: depends on unknown service {dep}")
            elif condition not in CONDITIONS:
                fail(f"{name}: depends on {dep} without a condition")
            elif condition == "service_healthy" and not (target.get("healthcheck") or {}).get("test"):
                fail(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            elif condition == "service_completed_successfully" and not is_one_shot(target):
                fail(f"{name}: waits for {dep} to complete, but {dep} is not a one-shot")
            elif condition != "service_completed_successfully" and is_one_shot(target):
                fail(f"{name}: depends on one-shot {dep} with {condition}, "
                     "not service_completed_successfully")

        for entry in svc.get("volumes") or []:
            kind, source, target, read_only = parse_volume(entry)
            if kind != "bind":
                fail(f"{name}: a {kind} at {target}: state belongs under the data "
                     f"directory ({data_dir}) as a bind mount")
                continue
            source = os.path.join(root, source) if not os.path.isabs(source) else source
            if inside(source, data_dir):
                continue
            if not read_only:
                fail(f"{name}: writable bind mount {source} -> {target} outside the data "
                     f"directory {data_dir} (mount it :ro, or keep the state under the data dir)")
            elif not os.path.exists(source):
                fail(f"{name}: bind mount source {source} does not exist")

        image = svc.get("image", "")
        if "build" in svc:
            args = (svc["build"].get("args") or {})
            built = args.get("SERVICE")
            if built not in MEDBOOK:
                fail(f"{name}: built without SERVICE set to one of {', '.join(MEDBOOK)}")
            elif image != f"medbook/{built}:local":
                fail(f"{name}: builds {built} but names the image {image!r}, "
                     f"not medbook/{built}:local")
            if os.path.basename(svc["build"].get("dockerfile", "Dockerfile")) != "Dockerfile":
                fail(f"{name}: not built from ./Dockerfile")
        else:
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            if not tag or tag == "latest":
                fail(f"{name}: image {image!r} is not pinned to a version tag")


def medbook_service_of(svc):
    return ((svc.get("build") or {}).get("args") or {}).get("SERVICE")


def check_medbook(services):
    migrate_of = {}
    for name, svc in services.items():
        crate = medbook_service_of(svc)
        if crate and is_one_shot(svc) and svc.get("command") == ["migrate"]:
            migrate_of[crate] = name

    for name, svc in sorted(services.items()):
        env = env_of(svc)
        crate = medbook_service_of(svc)
        medbook_vars = [v for v in env if v.startswith("MEDBOOK_")]
        if not crate:
            for var in medbook_vars:
                fail(f"{name}: sets {var}, but is not a medbook service")
            continue
        if is_one_shot(svc):
            continue

        for var, value in env.items():
            if var.startswith("MEDBOOK_") and var.endswith("ADDR") and "://" not in value:
                if not value.startswith("0.0.0.0:"):
                    fail(f"{name}: {var}={value} does not listen on 0.0.0.0 in the container")
        if env.get("MEDBOOK_DATABASE__RUN_MIGRATIONS", "").lower() != "false":
            fail(f"{name}: does not set MEDBOOK_DATABASE__RUN_MIGRATIONS=false")
        migrate = migrate_of.get(crate)
        if not migrate:
            fail(f"{name}: no one-shot runs `{crate} migrate`")
        elif deps_of(svc).get(migrate) != "service_completed_successfully":
            fail(f"{name}: does not wait for {migrate} (service_completed_successfully)")
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test != ["CMD", f"/usr/local/bin/{crate}", "healthcheck"]:
            fail(f"{name}: healthcheck is {test}, not "
                 f"[CMD, /usr/local/bin/{crate}, healthcheck]")
        if crate == "booking-service":
            grace = float(env.get("MEDBOOK_HTTP__SHUTDOWN_GRACE_SECS", "30"))
            stop = duration_secs(svc.get("stop_grace_period", "10s"))
            if stop <= grace:
                fail(f"{name}: stop_grace_period {stop:g}s is not longer than "
                     f"http.shutdown_grace_secs {grace:g}s")
        if name != crate:
            fail(f"{name}: the long-running {crate} must be the service named {crate} "
                 "(Prometheus and the other services find it by that name)")


def listens_on(svc, port):
    """Whether a service listens on `port`: a MEDBOOK_*ADDR setting or a known default."""
    for var, value in env_of(svc).items():
        if var.endswith("ADDR") and value.rsplit(":", 1)[-1] == str(port):
            return True
    return False


def check_wiring(services, root):
    prom = yaml.safe_load(open(os.path.join(root, "deploy/prometheus/prometheus.yml")))
    for job in prom.get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, port = target.rsplit(":", 1)
                if host == "localhost":
                    continue
                svc = services.get(host)
                if svc is None:
                    fail(f"prometheus.yml: target {target} of job {job.get('job_name')} "
                         "is no service of docker-compose.yml")
                elif medbook_service_of(svc) and not listens_on(svc, port):
                    fail(f"prometheus.yml: target {target}, but {host} listens on no "
                         f"MEDBOOK_*ADDR with port {port}")

    grafana = services.get("grafana")
    if grafana is None:
        fail("no grafana service")
        return
    mounts = [parse_volume(v) for v in grafana.get("volumes") or []]
    targets = {t.rstrip("/") for _, _, t, _ in mounts}
    prov = os.path.join(root, "deploy/grafana/provisioning")
    for path in sorted(os.listdir(os.path.join(prov, "datasources"))):
        doc = yaml.safe_load(open(os.path.join(prov, "datasources", path)))
        for ds in doc.get("datasources") or []:
            match = re.match(r"https?://([^:/]+)(?::(\d+))?", ds.get("url", ""))
            if match and match.group(1) not in services:
                fail(f"grafana datasource {ds.get('name')}: {ds['url']} names no service")
    for path in sorted(os.listdir(os.path.join(prov, "dashboards"))):
        doc = yaml.safe_load(open(os.path.join(prov, "dashboards", path)))
        for provider in doc.get("providers") or []:
            wanted = ((provider.get("options") or {}).get("path") or "").rstrip("/")
            if wanted and wanted not in targets:
                fail(f"grafana dashboard provider {provider.get('name')}: path {wanted} "
                     "is not mounted into the grafana service")
    if "/etc/grafana/provisioning" not in targets:
        fail("grafana: deploy/grafana/provisioning is not mounted at /etc/grafana/provisioning")


def check_env_file(compose_file, env_file):
    text = open(compose_file, encoding="utf-8").read()
    values = read_env_file(env_file)
    for var in sorted(set(re.findall(r"\$\{(\w+):?\?", text))):
        if not values.get(var):
            fail(f"{os.path.basename(env_file)}: no value for {var}, which "
                 f"{os.path.basename(compose_file)} requires")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rendered", help="output of `docker-compose config`")
    parser.add_argument("--root", default=".", help="the repository root")
    parser.add_argument("--compose-file", default="docker-compose.yml")
    parser.add_argument("--env-file", default=".env.example")
    parser.add_argument("--data-dir", help="the data directory (default: MEDBOOK_DATA_DIR "
                        "of the env file, relative to --root)")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    env_file = os.path.join(root, args.env_file)
    data_dir = args.data_dir or read_env_file(env_file).get("MEDBOOK_DATA_DIR", "./.data")
    data_dir = os.path.normpath(os.path.join(root, data_dir))

    rendered = yaml.safe_load(open(args.rendered, encoding="utf-8"))
    services = rendered.get("services") or {}
    if not services:
        print("check_compose: no services in the rendered configuration", file=sys.stderr)
        return 1
    for crate in MEDBOOK:
        if crate not in services:
            fail(f"no service named {crate}")
    if rendered.get("volumes"):
        fail(f"named volumes {', '.join(rendered['volumes'])}: keep state under {data_dir}")

    check_services(services, root, data_dir)
    check_medbook(services)
    check_wiring(services, root)
    check_env_file(os.path.join(root, args.compose_file), env_file)

    for message in failures:
        print(f"FAIL {message}")
    long_running = sum(1 for s in services.values() if not is_one_shot(s))
    print(f"check_compose: {len(services)} services ({long_running} long-running), "
          f"{len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
