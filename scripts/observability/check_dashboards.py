#!/usr/bin/env python3
"""Checks the Grafana dashboards against a live Prometheus.

Every PromQL expression of every panel (panels inside rows too) is sent to
Prometheus's /api/v1/query, with Grafana's own variables replaced by fixed values. An
expression passes when the query succeeds and returns at least one series; with
--parse-only, when it succeeds at all (an empty result is fine; a syntax error is
Prometheus's `bad_data`). Failing expressions are retried until --deadline, as rate()
needs two scrapes and recording rules one evaluation. The dashboards' structure is
checked as well: a fixed uid, title, schemaVersion 39, the "medbook" tag, refresh and
time range, and every panel and target on the datasource {"type": "prometheus", "uid":
"prometheus"}.

A job may have several targets (on Kubernetes one per pod), so every expression must
aggregate over them: an expression naming a raw metric has an aggregation (sum, max,
min, avg, count…), and histogram_quantile aggregates `by (le, …)`; against live
Prometheus, a series that still carries `instance` or `pod` fails, unless the target's
legend names that label (a panel meant to show each pod).

Prints one line per expression; exits 0 when all pass, 1 when any fails, 2 when
Prometheus cannot be reached or there is nothing to check. Python 3 standard library
only.
"""

import argparse
import glob
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SCHEMA_VERSION = 39
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DASHBOARDS = os.path.join(ROOT, "deploy", "grafana", "dashboards", "*.json")

# Grafana's variables that may appear in an expression; anything else starting with $
# is refused, so a new variable cannot slip past the check unsubstituted. Longer names
# first, so $__interval_ms is not read as $__interval followed by "_ms".
GRAFANA_VARIABLES = (
    "__rate_interval",
    "__interval_ms",
    "__interval",
    "__range_ms",
    "__range_s",
    "__range",
)
VARIABLE_RE = re.compile(
    r"\$(?:\{(%s)\}|(%s)(?![A-Za-z0-9_]))" % ("|".join(GRAFANA_VARIABLES), "|".join(GRAFANA_VARIABLES))
)
# A variable reference: $name or ${name...}; $1 (a label_replace group) is not one.
ANY_VARIABLE_RE = re.compile(r"\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")
DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
# Per-target labels: one series per pod (Kubernetes) or per target.
TARGET_LABELS = ("instance", "pod")
AGGREGATION_RE = re.compile(
    r"\b(?:sum|max|min|avg|count|group|topk|bottomk|quantile|stddev|stdvar|count_values)\s*"
    r"(?:(?:by|without)\s*\([^)]*\)\s*)?\("
)
# A metric selector: a name followed by { or [ (recorded series, level:metric:op, are
# aggregated already by their rules).
RAW_SELECTOR_RE = re.compile(r"(?<![\w:])([a-zA-Z_][a-zA-Z0-9_]*)\s*[{\[]")
QUANTILE_RE = re.compile(
    r"histogram_quantile\(\s*[0-9.]+\s*,\s*(?:sum|max|min|avg)\s+by\s*\(([^)]*)\)"
)


class Unreachable(Exception):
    pass


def duration_seconds(text):
    """Seconds of a duration like 1m, 90s, 1h30m, 1d."""
    match = DURATION_RE.match(text)
    if not text or not match:
        raise argparse.ArgumentTypeError(f"not a duration (like 1m, 90s, 1h30m): {text!r}")
    d, h, m, s = (int(g or 0) for g in match.groups())
    return ((d * 24 + h) * 60 + m) * 60 + s


def duration(text):
    duration_seconds(text)
    return text


def substitutions(args):
    duration_seconds(args.rate_interval)
    interval_s = duration_seconds(args.interval)
    range_s = duration_seconds(args.range)
    return {
        "__rate_interval": args.rate_interval,
        "__interval": args.interval,
        "__interval_ms": str(interval_s * 1000),
        "__range": args.range,
        "__range_s": str(range_s),
        "__range_ms": str(range_s * 1000),
    }


def substitute(expr, values):
    """The expression with Grafana's variables replaced; raises ValueError on others."""
    result = VARIABLE_RE.sub(lambda m: values[m.group(1) or m.group(2)], expr)
    unknown = ANY_VARIABLE_RE.findall(result)
    if unknown:
        raise ValueError("unknown Grafana variable(s): " + ", ".join("$" + u for u in unknown))
    return result


def walk_panels(panels):
    """Every panel, rows' nested panels included."""
    for panel in panels or []:
        yield panel
        yield from walk_panels(panel.get("panels"))


def lint_dashboard(name, dashboard):
    problems = []
    if not dashboard.get("uid"):
        problems.append("no fixed uid")
    if not dashboard.get("title"):
        problems.append("no title")
    if dashboard.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(f"schemaVersion is {dashboard.get('schemaVersion')!r}, not {SCHEMA_VERSION}")
    if "medbook" not in (dashboard.get("tags") or []):
        problems.append('no "medbook" tag')
    if not dashboard.get("refresh"):
        problems.append("no refresh")
    time_range = dashboard.get("time") or {}
    if not time_range.get("from") or not time_range.get("to"):
        problems.append("no time range")
    if (dashboard.get("templating") or {}).get("list"):
        problems.append("template variables are not supported by this checker")
    for panel in walk_panels(dashboard.get("panels")):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "?")
        if panel.get("datasource") != DATASOURCE:
            problems.append(f"panel {title!r}: datasource is {panel.get('datasource')!r}")
        for target in panel.get("targets") or []:
            if "datasource" in target and target["datasource"] != DATASOURCE:
                problems.append(f"panel {title!r} target {target.get('refId')}: datasource is {target['datasource']!r}")
    return [f"{name}: {p}" for p in problems]


def lint_aggregation(expr):
    """Problems of an expression that would be per target (per pod), or empty."""
    problems = []
    raw = [m for m in RAW_SELECTOR_RE.findall(expr) if m not in ("by", "without", "on", "ignoring")]
    if raw and not AGGREGATION_RE.search(expr):
        problems.append(f"{raw[0]} is not aggregated (sum/max/min… over the job's pods)")
    quantiles = len(re.findall(r"histogram_quantile\(", expr))
    by_le = [m for m in QUANTILE_RE.findall(expr) if "le" in (l.strip() for l in m.split(","))]
    if quantiles and len(by_le) != quantiles:
        problems.append("histogram_quantile over buckets not aggregated `by (le, …)`")
    return problems


def extract(files):
    """(checks, problems): one check per panel target with an expr."""
    checks, problems = [], []
    for path in files:
        name = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as f:
                dashboard = json.load(f)
        except (OSError, ValueError) as e:
            problems.append(f"{name}: cannot read: {e}")
            continue
        problems.extend(lint_dashboard(name, dashboard))
        panels = list(dashboard.get("panels") or [])
        for row in dashboard.get("rows") or []:  # pre-5.0 layout, should one appear
            panels.extend(row.get("panels") or [])
        for panel in walk_panels(panels):
            for target in panel.get("targets") or []:
                expr = (target.get("expr") or "").strip()
                if expr:
                    legend = target.get("legendFormat") or ""
                    checks.append({
                        "dashboard": name,
                        "panel": panel.get("title", "?"),
                        "ref": target.get("refId", "?"),
                        "expr": expr,
                        # Labels the legend shows: a panel of one series per pod may keep them.
                        "per_target": {l for l in TARGET_LABELS if "{{" + l + "}}" in legend.replace(" ", "")},
                    })
                    for problem in lint_aggregation(expr):
                        problems.append(f"{name}: panel {panel.get('title', '?')!r} [{target.get('refId', '?')}]: {problem}")
    return checks, problems


class Prometheus:
    def __init__(self, url, timeout):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, path, data=None):
        request = urllib.request.Request(
            self.url + path,
            data=urllib.parse.urlencode(data).encode() if data is not None else None,
            headers={"Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            # The API answers errors (400 bad_data, 422 execution, 503 timeout) in JSON.
            body = e.read()
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "errorType": f"http_{e.code}", "error": body[:200].decode(errors="replace")}
        except (urllib.error.URLError, OSError) as e:
            raise Unreachable(f"cannot reach Prometheus at {self.url}: {getattr(e, 'reason', e)}") from e
        try:
            return json.loads(body)
        except ValueError as e:
            raise Unreachable(f"{self.url}{path} did not answer JSON: is it a Prometheus?") from e

    def check_reachable(self):
        answer = self._request("/api/v1/status/buildinfo")
        if answer.get("status") != "success":
            raise Unreachable(f"{self.url} answered {answer!r} to /api/v1/status/buildinfo")
        return answer["data"].get("version", "?")

    def query(self, expr):
        return self._request("/api/v1/query", {"query": expr})


def evaluate(answer, parse_only, allowed=frozenset()):
    """(passed, permanent, series, reason). A series carrying a per-target label the
    legend does not name fails: the expression does not aggregate over the pods."""
    if answer.get("status") != "success":
        error_type = answer.get("errorType", "?")
        reason = f"{error_type}: {answer.get('error', '')}"
        # A parse error stays one: no use retrying it.
        return False, error_type == "bad_data", 0, reason
    data = answer.get("data") or {}
    result = data.get("result")
    if data.get("resultType") in ("scalar", "string"):
        series = 1
    else:
        series = len(result or [])
    if data.get("resultType") in ("vector", "matrix"):
        for item in result or []:
            kept = [l for l in TARGET_LABELS if l in (item.get("metric") or {}) and l not in allowed]
            if kept:
                return False, True, series, (
                    "a series per target (" + ", ".join(f"{l}={item['metric'][l]}" for l in kept) + "): "
                    "aggregate over the job's pods (sum/max by …)")
    if parse_only or series > 0:
        return True, True, series, ""
    return False, False, 0, "empty result"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("dashboards", nargs="*", help="dashboard JSON files (default: deploy/grafana/dashboards/*.json)")
    parser.add_argument("--rate-interval", type=duration, default="1m", help="value of $__rate_interval (default 1m)")
    parser.add_argument("--interval", type=duration, default="1m", help="value of $__interval (default 1m)")
    parser.add_argument("--range", type=duration, default="1h", help="value of $__range (default 1h)")
    parser.add_argument("--deadline", type=float, default=120, help="seconds to keep retrying failing expressions (default 120)")
    parser.add_argument("--parse-only", action="store_true", help="only check that each expression is valid PromQL; empty results pass")
    parser.add_argument("--timeout", type=float, default=10, help="seconds per HTTP request (default 10)")
    args = parser.parse_args()

    files = args.dashboards or sorted(glob.glob(DEFAULT_DASHBOARDS))
    if not files:
        print(f"error: no dashboard files ({DEFAULT_DASHBOARDS})", file=sys.stderr)
        return 2
    checks, problems = extract(files)
    if not checks:
        print(f"error: no expressions found in {len(files)} dashboard file(s): {' '.join(files)}", file=sys.stderr)
        return 2

    values = substitutions(args)
    for check in checks:
        try:
            check["query"] = substitute(check["expr"], values)
        except ValueError as e:
            check["query"] = None
            check.update(passed=False, series=0, reason=str(e))

    prometheus = Prometheus(args.prometheus, args.timeout)
    try:
        version = prometheus.check_reachable()
    except Unreachable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mode = "parse only" if args.parse_only else "each must return series"
    print(f"checking {len(checks)} expressions of {len(files)} dashboards against Prometheus {version} at {args.prometheus} ({mode})")

    deadline = time.monotonic() + args.deadline
    pending = [c for c in checks if c["query"] is not None]
    while pending:
        retry = []
        for check in pending:
            try:
                answer = prometheus.query(check["query"])
            except Unreachable as e:
                answer = {"status": "error", "errorType": "unreachable", "error": str(e)}
            passed, permanent, series, reason = evaluate(answer, args.parse_only, check["per_target"])
            check.update(passed=passed, series=series, reason=reason)
            if not passed and not permanent:
                retry.append(check)
        pending = retry
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    for check in checks:
        verdict = "PASS" if check["passed"] else "FAIL"
        print(f"{verdict}  {check['dashboard']}  {check['panel']!r} [{check['ref']}]  {check['series']} series")
    failed = [c for c in checks if not c["passed"]]
    for problem in problems:
        print(f"PROBLEM  {problem}")
    # Not "N passed, M failed": test runs end with that line for their own tests.
    print(f"{len(checks) - len(failed)} of {len(checks)} expressions passed"
          + (f"; {len(problems)} dashboard problem(s)" if problems else ""))
    if failed:
        print("\nfailed expressions:", file=sys.stderr)
        for c in failed:
            print(f"- {c['dashboard']} {c['panel']!r} [{c['ref']}]: {c['reason']}\n    {c['query'] or c['expr']}", file=sys.stderr)
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
