"""schemathesis hooks of scripts/contract-test.sh.

A schema-valid ("positive") request may still be refused with 400 `validation_failed`
for a rule no JSON Schema keyword can state: a field compared with another field, with
stored data or with today's date (a slot's end after its start, a birth date not in the
future, a reset token that is still valid). The document lists those rules per
operation in `x-medbook-rules` (see booking-service's transport/http/openapi/
constraints.rs). A refusal whose every `details` entry names one of the operation's
listed fields is what the document promises, so it is not reported; every other failure
is.
"""

import schemathesis

# "Schema-valid request rejected" (the positive_data_acceptance check).
REJECTED_POSITIVE_DATA = "ST202"


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but a refusal the operation's `x-medbook-rules` explain."""
    if getattr(failure, "code", None) != REJECTED_POSITIVE_DATA or response.status_code != 400:
        return True
    rules = case.operation.definition.raw.get("x-medbook-rules") or []
    stated = {rule["field"] for rule in rules}
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return True
    details = error.get("details") or []
    if error.get("code") != "validation_failed" or not details:
        return True
    return not all(detail.get("field") in stated for detail in details)
