"""schemathesis hooks of scripts/contract-test.sh: failures the document itself
explains are not reported; every other failure is.

* A schema-valid ("positive") request may still be refused with 400
  `validation_failed` for a rule no JSON Schema keyword can state: a field compared
  with another field, with stored data or with today's date (a slot's end after its
  start, a birth date not in the future, a reset token that is still valid). The
  document lists those rules per operation in `x-medbook-rules` (see booking-service's
  transport/http/openapi/constraints.rs). A refusal whose every `details` entry names
  one of the operation's listed fields is what the document promises.
* A DELETE may answer 200 for a resource it keeps (a doctor with appointments is made
  inactive instead): that response is marked `x-medbook-kept-as` with what the kept
  resource looks like. Reading such a resource after the DELETE is what the document
  promises, not a use after free.
"""

import schemathesis

# "Schema-valid request rejected" (the positive_data_acceptance check).
REJECTED_POSITIVE_DATA = "ST202"
# "Deleted resource still available" (the use_after_free check).
USE_AFTER_FREE = "ST301"


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but those the document explains."""
    code = getattr(failure, "code", None)
    if code == USE_AFTER_FREE:
        return not _kept_by_delete(failure, case, response)
    if code != REJECTED_POSITIVE_DATA or response.status_code != 400:
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


def _kept_by_delete(failure, case, response):
    """Whether the DELETE's documented 200 keeps the resource, and it was read as kept."""
    method, _, path = failure.operation.partition(" ")
    operation = case.operation.schema.raw_schema.get("paths", {}).get(path, {}).get(method.lower(), {})
    kept_as = operation.get("responses", {}).get("200", {}).get("x-medbook-kept-as")
    if not kept_as:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and all(body.get(k) == v for k, v in kept_as.items())
