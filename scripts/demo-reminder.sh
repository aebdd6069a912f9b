#!/usr/bin/env bash
# Books a demo appointment that starts in 65 minutes, to watch its reminder arrive.
# Run beside ./scripts/run.sh started with a short offset, e.g.
#   MEDBOOK_REMINDERS__OFFSETS=62m ./scripts/run.sh
# and the reminder is in the mail sink (http://127.0.0.1:1080) about three minutes
# later. Uses the admin and demo patient that run.sh creates; MEDBOOK_URL,
# MEDBOOK_DEV_ADMIN_EMAIL / _PASSWORD and DEMO_PATIENT override them.
set -euo pipefail
base="${MEDBOOK_URL:-http://127.0.0.1:8080}"
admin_email="${MEDBOOK_DEV_ADMIN_EMAIL:-admin@medbook.local}"
admin_password="${MEDBOOK_DEV_ADMIN_PASSWORD:-clinic-console-2026}"
patient="${DEMO_PATIENT:-patient01@demo.medbook.local}"

json() { python3 -c "import sys, json; v = json.load(sys.stdin); print($1)"; }
post() { # path token body
    curl -sS -X POST "$base$1" -H 'content-type: application/json' \
        ${2:+-H "authorization: Bearer $2"} -d "$3"
}
token() { post /api/v1/auth/login "" "{\"email\":\"$1\",\"password\":\"$2\"}" | json 'v["access_token"]'; }

admin=$(token "$admin_email" "$admin_password")
starts=$(date -u -d '+65 minutes' +%Y-%m-%dT%H:%M:00Z)
ends=$(date -u -d '+95 minutes' +%Y-%m-%dT%H:%M:00Z)
# The first active doctor whose calendar is free then.
slot=""
for doctor in $(curl -sS "$base/api/v1/doctors?status=active&per_page=50" | json '" ".join(d["id"] for d in v["items"])'); do
    answer=$(post "/api/v1/doctors/$doctor/slots" "$admin" "{\"starts_at\":\"$starts\",\"ends_at\":\"$ends\"}")
    slot=$(echo "$answer" | json 'v.get("id", "")')
    [ -n "$slot" ] && break
done
[ -n "$slot" ] || { echo "no doctor is free at $starts" >&2; exit 1; }

me=$(token "$patient" demo-patient)
appointment=$(post /api/v1/appointments "$me" "{\"slot_id\":\"$slot\",\"reason\":\"reminder demo\"}")
id=$(echo "$appointment" | json 'v.get("id") or sys.exit("booking failed: " + json.dumps(v))')
echo "booked appointment $id for $patient, starting $starts"
echo "its reminders are due at the start minus reminders.offsets; emails: http://127.0.0.1:1080"
