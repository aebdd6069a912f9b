"""End-to-end check of the traces: books through the live system with a known W3C
traceparent, then reads the spans back from the trace receiver (rotel's JSON lines)
and checks every hop and its parent: HTTP server span -> database transaction ->
outbox relay's producer span -> notification-service's consumer span -> SMTP send,
and -> audit shipping span -> audit-service's append span; a gRPC call with a
traceparent continues it too; log lines carry trace_id and span_id. Also makes the
traffic the dashboards need (bookings, a conflict, a reschedule, cancellations by a
patient and an admin). Standard library only. Exits 1 naming every missing hop.

Usage: e2e.py --api URL --spans FILE --grpcurl BIN --grpc HOST:PORT --doctor ID
              --slots ID,ID,... --booking-log F --notification-log F --audit-log F
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
ADMIN = ("admin@e2e.medbook.test", "violet-lantern-meadow")
PATIENT_PASSWORD = "demo-patient"


def call(api, method, path, body=None, token=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    req = urllib.request.Request(api + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def login(api, email, password):
    status, body = call(api, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    if status != 200:
        sys.exit(f"login {email}: {status} {body}")
    return body["access_token"]


def expect(what, status, body, wanted):
    if status != wanted:
        sys.exit(f"{what}: expected {wanted}, got {status} {body}")
    print(f"ok   {what} ({status})")
    return body


def spans_of(path, trace_id):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                s = json.loads(line)
            except ValueError:
                continue
            if s.get("trace_id") == trace_id:
                out.append(s)
    return out


def find(spans, service, name, kind, parent=None):
    for s in spans:
        if s["service"] == service and s["name"] == name and s["kind"] == kind:
            if parent is None or s["parent_span_id"] == parent["span_id"]:
                return s
    return None


def descends(spans, child, ancestor):
    by_id = {s["span_id"]: s for s in spans}
    cur = child
    for _ in range(50):
        if cur is None:
            return False
        if cur["parent_span_id"] == ancestor["span_id"]:
            return True
        cur = by_id.get(cur["parent_span_id"])
    return False


def booking_trace_hops(spans, sent_parent):
    """The hops of the booking's trace, in order, each (label, span or None)."""
    hops = []
    server = None
    for s in spans:
        if (s["service"] == "booking-service" and s["name"] == "POST /api/v1/appointments"
                and s["kind"] == SERVER and s["parent_span_id"] == sent_parent):
            server = s
    hops.append(("HTTP server span POST /api/v1/appointments, child of the caller's span", server))
    tx = next((s for s in spans if server and s["service"] == "booking-service"
               and s["name"] == "db.transaction" and descends(spans, s, server)), None)
    hops.append(("db.transaction under the request", tx))
    use_case = next((s for s in spans if server and s["name"] == "book"
                     and s["parent_span_id"] == server["span_id"]), None)
    hops.append(("use-case span book, child of the server span", use_case))
    producer = next((s for s in spans if server and s["service"] == "booking-service"
                     and s["kind"] == PRODUCER and s["name"].endswith("appointments.created publish")
                     and descends(spans, s, server)), None)
    hops.append(("relay producer span appointments.created publish, in the request's trace", producer))
    consumer = find(spans, "notification-service", (producer or {}).get("attributes", {}).get(
        "messaging.destination.name", "?") + " process", CONSUMER, producer) if producer else None
    hops.append(("notification-service consumer span, child of the producer span", consumer))
    smtp = find(spans, "notification-service", "smtp send", CLIENT, consumer) if consumer else None
    hops.append(("SMTP client span, child of the consumer span, accepted", smtp if smtp and smtp["status_code"] != 2 else None))
    ship = next((s for s in spans if server and s["service"] == "booking-service"
                 and s["name"] == "audit.record ship" and descends(spans, s, server)), None)
    hops.append(("audit shipping span, in the request's trace", ship))
    append = find(spans, "audit-service", "audit.record append", CONSUMER, ship) if ship else None
    hops.append(("audit-service append span, child of the shipping span", append))
    return hops


def main():
    p = argparse.ArgumentParser()
    for a in ["api", "spans", "grpcurl", "grpc", "doctor", "slots", "booking-log",
              "notification-log", "audit-log"]:
        p.add_argument("--" + a, required=True)
    p.add_argument("--deadline", type=float, default=90)
    args = p.parse_args()
    api = args.api
    slots = args.slots.split(",")
    if len(slots) < 5:
        sys.exit(f"need 5 free slots of one doctor, got {len(slots)}")

    admin = login(api, *ADMIN)
    p1 = login(api, "patient01@demo.medbook.local", PATIENT_PASSWORD)
    p2 = login(api, "patient02@demo.medbook.local", PATIENT_PASSWORD)

    trace_id = secrets.token_hex(16)
    parent_span = secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{parent_span}-01"
    booked = expect("book with a traceparent",
                    *call(api, "POST", "/api/v1/appointments", {"slot_id": slots[0], "reason": "e2e trace"},
                          p1, {"traceparent": traceparent}), 201)
    appointment = booked["id"]
    body = expect("the same slot again is a conflict",
                  *call(api, "POST", "/api/v1/appointments", {"slot_id": slots[0]}, p2), 409)
    if body["error"]["code"] != "slot_taken":
        sys.exit(f"expected slot_taken, got {body}")
    expect("reschedule", *call(api, "POST", f"/api/v1/appointments/{appointment}/reschedule",
                               {"slot_id": slots[1]}, p1), 200)
    expect("an admin cancels", *call(api, "POST", f"/api/v1/appointments/{appointment}/cancel",
                                     {"reason": "doctor ill"}, admin), 200)
    other = expect("a second booking", *call(api, "POST", "/api/v1/appointments",
                                              {"slot_id": slots[2]}, p2), 201)
    expect("the patient cancels it", *call(api, "POST", f"/api/v1/appointments/{other['id']}/cancel",
                                           {}, p2), 200)
    expect("a third booking", *call(api, "POST", "/api/v1/appointments", {"slot_id": slots[3]}, p1), 201)
    for i in range(20):
        call(api, "GET", "/api/v1/doctors?per_page=5")

    # A gRPC call with a traceparent of its own trace.
    grpc_trace = secrets.token_hex(16)
    grpc_parent = secrets.token_hex(8)
    out = subprocess.run(
        [args.grpcurl, "-plaintext", "-H", f"traceparent: 00-{grpc_trace}-{grpc_parent}-01",
         "-d", json.dumps({"doctor_id": args.doctor}), args.grpc,
         "medbook.schedule.v1.ScheduleService/GetAvailableSlots"],
        capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        sys.exit(f"grpcurl GetAvailableSlots failed: {out.stderr}")
    print("ok   gRPC GetAvailableSlots with a traceparent")

    # Spans arrive in batches (the SDK's 5 s schedule); wait for every hop.
    deadline = time.monotonic() + args.deadline
    while True:
        spans = spans_of(args.spans, trace_id)
        hops = booking_trace_hops(spans, parent_span)
        grpc_spans = spans_of(args.spans, grpc_trace)
        grpc_server = next((s for s in grpc_spans if s["service"] == "booking-service"
                            and s["name"] == "medbook.schedule.v1.ScheduleService/GetAvailableSlots"
                            and s["kind"] == SERVER and s["parent_span_id"] == grpc_parent), None)
        hops_all = hops + [("ScheduleService server span, child of the grpcurl caller's span", grpc_server)]
        if all(s for _, s in hops_all) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    failed = False
    print(f"trace {trace_id}: {len(spans)} spans")
    for label, s in hops_all:
        if s:
            print(f"ok   {label}: {s['service']} '{s['name']}' span {s['span_id']} parent {s['parent_span_id'] or '-'}")
        else:
            failed = True
            print(f"FAIL {label}: not found")
    # The audit relay's gRPC call: a client span and the server's span as its child.
    with open(args.spans, encoding="utf-8") as f:
        every = [json.loads(l) for l in f if l.strip()]
    clients = {s["span_id"]: s for s in every if s["service"] == "booking-service"
               and s["name"] == "medbook.audit.v1.AuditService/Append" and s["kind"] == CLIENT}
    pair = next((s for s in every if s["service"] == "audit-service" and s["kind"] == SERVER
                 and s["name"] == "medbook.audit.v1.AuditService/Append"
                 and s["parent_span_id"] in clients), None)
    if pair:
        print(f"ok   audit Append: client span {pair['parent_span_id']} -> server span {pair['span_id']}")
    else:
        failed = True
        print("FAIL audit Append: no server span that is the child of a client span")

    # Log lines of the request and of the email carry the trace.
    for name, path in [("booking-service", args.booking_log), ("notification-service", args.notification_log)]:
        lines = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("trace_id") == trace_id and len(entry.get("span_id", "")) == 16:
                    lines.append(entry.get("message"))
        if lines:
            print(f"ok   {name} log lines with trace_id and span_id: {len(lines)} ({', '.join(sorted(set(lines))[:4])})")
        else:
            failed = True
            print(f"FAIL {name}: no log line carries trace_id {trace_id}")
    if failed:
        sys.exit(1)
    print("trace check passed")


if __name__ == "__main__":
    main()
