# A rotel trace processor (runs inside rotel's embedded Python; standard library only):
# appends every span it receives as one JSON line to $MEDBOOK_SPANS_FILE, so tests and
# people can read traces back (grep a trace_id). Ids are lowercase hex, as in logs.
import json
import os

OUT = os.environ["MEDBOOK_SPANS_FILE"]


def _value(any_value):
    if any_value is None:
        return None
    v = any_value.value
    if isinstance(v, bytes):
        return v.hex()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return repr(v)


def _attributes(kvs):
    return {kv.key: _value(kv.value) for kv in kvs}


def process_spans(resource_spans):
    resource = _attributes(resource_spans.resource.attributes) if resource_spans.resource else {}
    lines = []
    for scope_spans in resource_spans.scope_spans:
        for s in scope_spans.spans:
            lines.append(json.dumps({
                "trace_id": s.trace_id.hex(),
                "span_id": s.span_id.hex(),
                "parent_span_id": s.parent_span_id.hex(),
                "name": s.name,
                "kind": s.kind,
                "start_time_unix_nano": s.start_time_unix_nano,
                "end_time_unix_nano": s.end_time_unix_nano,
                "status_code": s.status.code if s.status else 0,
                "attributes": _attributes(s.attributes),
                "service": resource.get("service.name"),
            }))
    if lines:
        with open(OUT, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
