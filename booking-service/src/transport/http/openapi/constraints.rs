//! What the server enforces, stated in the document.
//!
//! paperclip describes types (string, integer, uuid, date), not the rules the DTOs and
//! the domain's parse functions apply: its derive has no attributes for string lengths,
//! patterns, enums of a `String` field, `nullable` or `additionalProperties`, and its
//! OpenAPI 3 conversion drops the `minimum`/`maximum` it does have. So the rules are
//! stated here, from the constants the validation itself uses:
//!
//! * [`property_rules`]: lengths, patterns, enums, ranges and formats of body fields;
//! * [`parameter_rules`]: the same for query parameters;
//! * every optional field is `nullable` (serde reads `null` as absent, and writes `None`
//!   as `null`), every response field is `required` (responses always carry every
//!   field), and every request body is closed (`additionalProperties: false`: the
//!   request DTOs have `deny_unknown_fields`);
//! * [`operation_rules`]: rules no JSON Schema keyword can state (across fields, against
//!   stored data or today's date), in words, on the operation as `x-medbook-rules`, each
//!   refused with 400 `validation_failed` naming the field.
//!
//! Nested structs, which paperclip writes inline, are first replaced by references to
//! their named schemas, so that each rule is stated once and holds wherever the
//! schema is used.

// JSON values are read with `value[key]` (a missing key reads as null, it never
// panics) and written only into objects of the generated document.
#![allow(clippy::indexing_slicing)]

use crate::domain::booking::{
    AppointmentStatus, AuthorShownAs, DoctorStatus, Rating, SlotStatus, MAX_ADDRESS_CHARS,
    MAX_CITY_CHARS, MAX_CLINIC_NAME_CHARS,
};
use crate::domain::schedule::{
    parse_time_zone, MAX_BUFFER_MINUTES, MAX_SLOT_RANGE_MINUTES, MAX_TEMPLATE_DAYS,
    MAX_TEMPLATE_SLOT_MINUTES, MIN_SLOT_RANGE_MINUTES, MIN_TEMPLATE_SLOT_MINUTES,
};
use crate::domain::values::{
    MAX_AGE_YEARS, MAX_EMAIL_LEN, MAX_NAME_CHARS, MAX_PASSWORD_BYTES, MAX_PHONE_DIGITS,
    MIN_PASSWORD_CHARS, MIN_PHONE_DIGITS,
};
use crate::domain::{password_policy, Gender, Role};
use crate::transport::http::dto::appointments::{MAX_REASON_CHARS, MAX_REVIEW_CHARS};
use crate::transport::http::dto::catalog::{
    MAX_BIO_CHARS, MAX_DOCTOR_NAME_CHARS, MAX_SPECIALTY_CHARS, MAX_YEARS_OF_EXPERIENCE,
};
use crate::transport::http::dto::common::{MAX_FILTER_CHARS, MAX_PAGE, MAX_PER_PAGE};
use crate::transport::http::dto::slots::{DEFAULT_LIST_DAYS, MAX_LIST_DAYS};
use crate::transport::http::extractors::MAX_IDEMPOTENCY_KEY_CHARS;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Nested structs paperclip writes inline and never names: (name, schema holding it,
/// JSON pointer within that schema).
const NESTED: &[(&str, &str, &str)] = &[
    (
        "RatingSummaryResponse",
        "DoctorResponse",
        "/properties/rating",
    ),
    (
        "RatingSummaryResponse",
        "DoctorRecordResponse",
        "/properties/rating",
    ),
    ("ErrorDetail", "ErrorBody", "/properties/error"),
    ("FieldDetail", "ErrorDetail", "/properties/details/items"),
    (
        "AuditRecordResponse",
        "AuditPage",
        "/properties/items/items",
    ),
    ("AuditActor", "AuditRecordResponse", "/properties/actor"),
    (
        "AuditChange",
        "AuditRecordResponse",
        "/properties/changes/items",
    ),
    (
        "AppointmentResponse",
        "AppointmentPage",
        "/properties/items/items",
    ),
    (
        "DayAppointment",
        "DoctorDay",
        "/properties/appointments/items",
    ),
    (
        "EffectivePolicy",
        "ClinicPolicyResponse",
        "/properties/effective",
    ),
    (
        "WaitlistEntryResponse",
        "WaitlistResponse",
        "/properties/entries/items",
    ),
    (
        "HeldSlotResponse",
        "WaitlistEntryResponse",
        "/properties/offer",
    ),
];

/// The body of `PUT /api/v1/patients/{id}`: the patient fields without `password`,
/// which only a create accepts (paperclip gives both operations the DTO's schema).
const PATIENT_REPLACEMENT: &str = "PatientReplaceRequest";

/// Control characters refused by `parse_text` (all of Unicode's `Cc` but tab, line feed
/// and carriage return), as the inside of a regex character class.
const TEXT_CONTROLS: &str = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F";
/// Every control character (`FullName` refuses them all).
const ALL_CONTROLS: &str = r"\u0000-\u001F\u007F-\u009F";
/// No NUL: PostgreSQL cannot store one in a text value, so the server refuses it.
const NO_NUL: &str = r"^[^\u0000]*$";
/// What `Phone::parse` removes inside a number.
const PHONE_SEPARATORS: &str = r"[ .()-]*";

/// Applies every rule to paperclip's OpenAPI 3 document. Returns the rules whose
/// target is not in the document (a renamed field or route): a test keeps it empty.
pub(super) fn apply(spec: &mut Value) -> Vec<String> {
    let mut missing = Vec::new();
    let Some(schemas) = spec
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return vec!["/components/schemas".into()];
    };
    missing.extend(name_nested_schemas(schemas));
    missing.extend(split_patient_replacement(spec));

    let requests = body_schemas(spec, "requestBody");
    let responses = body_schemas(spec, "responses");
    if let Some(schemas) = spec
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (schema, property, rule) in property_rules() {
            match schemas
                .get_mut(schema)
                .and_then(|s| s.pointer_mut(&format!("/properties/{property}")))
                .and_then(Value::as_object_mut)
            {
                Some(target) => merge(target, rule),
                None => missing.push(format!("{schema}.{property}")),
            }
        }
        for (name, schema) in schemas.iter_mut() {
            mark_nullable(schema);
            if requests.contains(name) {
                schema["additionalProperties"] = json!(false);
            }
            if responses.contains(name) {
                require_all(schema);
            }
        }
    }
    missing.extend(apply_parameter_rules(spec));
    missing.extend(apply_operation_rules(spec));
    missing
}

/// Adds `rule`'s keywords to a schema (a rule's `description` goes after paperclip's).
fn merge(target: &mut Map<String, Value>, rule: Value) {
    let Value::Object(rule) = rule else { return };
    for (key, value) in rule {
        if key == "description" {
            let text = value.as_str().unwrap_or_default();
            let joined = match target.get("description").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => format!("{d} {text}"),
                _ => text.to_owned(),
            };
            target.insert(key, json!(joined));
        } else {
            target.insert(key, value);
        }
    }
}

/// Replaces every inline copy of a named schema (and of the [`NESTED`] ones, which get
/// a name) with a `$ref`, so that a rule on a schema holds wherever it is used.
fn name_nested_schemas(schemas: &mut Map<String, Value>) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, holder, pointer) in NESTED {
        match schemas.get(*holder).and_then(|s| s.pointer(pointer)) {
            Some(inline) => {
                let inline = inline.clone();
                schemas.insert((*name).to_owned(), inline);
            }
            None => missing.push(format!("{holder}{pointer}")),
        }
    }
    let named: Vec<(String, Value)> = schemas
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, schema) in schemas.iter_mut() {
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            for property in properties.values_mut() {
                replace_copies(property, &named, name);
            }
        }
    }
    missing
}

/// Walks a schema top-down and replaces each sub-schema equal to a named one (other
/// than `own`, the schema being walked) by a reference to it.
fn replace_copies(schema: &mut Value, named: &[(String, Value)], own: &str) {
    if let Some((name, _)) = named.iter().find(|(n, s)| n != own && s == schema) {
        *schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        return;
    }
    if let Some(items) = schema.get_mut("items") {
        replace_copies(items, named, own);
    }
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for property in properties.values_mut() {
            replace_copies(property, named, own);
        }
    }
}

/// Names of the schemas referenced from request bodies (`requestBody`) or responses
/// (`responses`), and of the schemas these reference in turn.
fn body_schemas(spec: &Value, section: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut refs = Vec::new();
    for item in spec["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for op in item.as_object().into_iter().flat_map(|i| i.values()) {
            collect_refs(&op[section], &mut refs);
        }
    }
    while let Some(name) = refs.pop() {
        if found.insert(name.clone()) {
            collect_refs(&spec["components"]["schemas"][&name], &mut refs);
        }
    }
    found
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.push(name.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Optional fields (`Option` in the DTO) are `nullable`: serde reads `null` as absent
/// and writes `None` as `null`. An enum of a nullable field lists `null` too.
fn mark_nullable(schema: &mut Value) {
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, property) in properties.iter_mut() {
        if required.contains(name) {
            continue;
        }
        if let Some(p) = property.as_object_mut() {
            p.insert("nullable".into(), json!(true));
            if let Some(values) = p.get_mut("enum").and_then(Value::as_array_mut) {
                if !values.contains(&Value::Null) {
                    values.push(Value::Null);
                }
            }
        }
    }
}

/// A response carries every field of its schema, `null` or not.
fn require_all(schema: &mut Value) {
    if let Some(names) = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().map(Value::String).collect::<Vec<_>>())
    {
        schema["required"] = Value::Array(names);
    }
}

/// Gives `PUT /api/v1/patients/{id}` a body schema without `password`.
fn split_patient_replacement(spec: &mut Value) -> Vec<String> {
    let Some(mut replacement) = spec.pointer("/components/schemas/PatientRequest").cloned() else {
        return vec!["PatientRequest".into()];
    };
    let removed = replacement
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .and_then(|p| p.remove("password"));
    if removed.is_none() {
        return vec!["PatientRequest.password".into()];
    }
    replacement["description"] = json!(
        "A patient's profile fields, replacing all of them. The password is not set here: \
         patients change it through /api/v1/me."
    );
    spec["components"]["schemas"][PATIENT_REPLACEMENT] = replacement;
    let body = "/paths/~1api~1v1~1patients~1{id}/put/requestBody/content/application~1json/schema";
    match spec.pointer_mut(body) {
        Some(schema) => {
            *schema = json!({ "$ref": format!("#/components/schemas/{PATIENT_REPLACEMENT}") });
            Vec::new()
        }
        None => vec![format!("PUT /api/v1/patients/{{id}} body")],
    }
}

/// A free-text field checked by `parse_text`: trimmed, at most `max` characters, no
/// control characters but tab and line breaks, and (unless `allow_empty`) not blank.
fn text(max: usize, allow_empty: bool) -> Value {
    let c = TEXT_CONTROLS;
    let mut rule = json!({
        "maxLength": max,
        "description": "Surrounding white space is trimmed.",
    });
    if allow_empty {
        rule["pattern"] = json!(format!("^[^{c}]*$"));
    } else {
        rule["minLength"] = json!(1);
        rule["pattern"] = json!(format!("^[^{c}]*[^\\s{c}][^{c}]*$"));
    }
    rule
}

/// A person's name (`FullName`): trimmed, 1 to 200 characters, no control characters.
fn full_name() -> Value {
    let c = ALL_CONTROLS;
    json!({
        "minLength": 1,
        "maxLength": MAX_NAME_CHARS,
        "pattern": format!("^[^{c}]*[^\\s{c}][^{c}]*$"),
        "description": "Surrounding white space is trimmed.",
    })
}

/// An e-mail address (`Email`): a dot-atom local part and a domain of two labels or
/// more; compared and stored in lower case.
fn email() -> Value {
    json!({
        "format": "email",
        "maxLength": MAX_EMAIL_LEN,
        "description": "Compared and stored trimmed and in lower case.",
    })
}

/// A new password (`Password`): 8 characters to 72 bytes, no NUL. The password policy
/// is an operation rule (see [`password_policy_rule`]).
fn password() -> Value {
    json!({
        "minLength": MIN_PASSWORD_CHARS,
        "maxLength": MAX_PASSWORD_BYTES,
        "pattern": NO_NUL,
        "format": "password",
    })
}

/// A phone number as `Phone::parse` accepts it: `+`, a country code not starting with
/// 0 and 7 to 15 digits in all, with spaces, dots, dashes and parentheses anywhere.
fn phone() -> Value {
    let s = PHONE_SEPARATORS;
    let more = MIN_PHONE_DIGITS - 1;
    let most = MAX_PHONE_DIGITS - 1;
    json!({
        "pattern": format!(r"^[ \t\n\r]*{s}\+{s}[1-9](?:{s}[0-9]){{{more},{most}}}{s}[ \t\n\r]*$"),
    })
}

fn one_of(values: &[&str]) -> Value {
    json!({ "enum": values })
}

fn range(minimum: i64, maximum: i64) -> Value {
    json!({ "minimum": minimum, "maximum": maximum })
}

fn at_least(minimum: i64) -> Value {
    json!({ "minimum": minimum })
}

/// `HH:MM`, 24-hour (`parse_hh_mm`; surrounding white space is ignored).
fn local_time() -> Value {
    json!({ "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$" })
}

/// The IANA zones `parse_time_zone` accepts.
fn time_zones() -> Value {
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .filter(|name| parse_time_zone(name).is_ok())
        .collect();
    json!({ "enum": zones })
}

/// (schema, property, keywords) for every body field the server checks beyond its type.
fn property_rules() -> Vec<(&'static str, &'static str, Value)> {
    let page = |schema| {
        [
            (schema, "total", at_least(0)),
            (schema, "page", range(1, i64::from(MAX_PAGE))),
            (schema, "per_page", range(1, i64::from(MAX_PER_PAGE))),
        ]
    };
    let profile = |schema| {
        [
            (schema, "email", email()),
            (schema, "full_name", full_name()),
            (schema, "gender", one_of(&Gender::ALL)),
            (schema, "phone", phone()),
        ]
    };
    let doctor = |schema| {
        [
            (schema, "full_name", text(MAX_DOCTOR_NAME_CHARS, false)),
            (schema, "specialty", text(MAX_SPECIALTY_CHARS, false)),
            (schema, "status", one_of(DoctorStatus::ALL)),
            (schema, "bio", text(MAX_BIO_CHARS, true)),
            (
                schema,
                "years_of_experience",
                range(0, i64::from(MAX_YEARS_OF_EXPERIENCE)),
            ),
        ]
    };
    let mut rules = vec![
        // Accounts.
        ("RegisterRequest", "password", password()),
        ("LoginRequest", "email", email()),
        (
            "LoginRequest",
            "password",
            json!({ "maxLength": MAX_PASSWORD_BYTES, "format": "password" }),
        ),
        ("PasswordResetRequest", "email", email()),
        ("PasswordResetConfirmRequest", "new_password", password()),
        ("UpdateMeRequest", "email", email()),
        ("UpdateMeRequest", "full_name", full_name()),
        ("UpdateMeRequest", "gender", one_of(&Gender::ALL)),
        ("UpdateMeRequest", "phone", phone()),
        ("UpdateMeRequest", "new_password", password()),
        (
            "UpdateMeRequest",
            "current_password",
            json!({ "format": "password" }),
        ),
        ("PatientRequest", "password", password()),
        ("AcceptedResponse", "email", email()),
        ("VerifiedResponse", "email", email()),
        (
            "VerifiedResponse",
            "email_verified",
            json!({ "enum": [true] }),
        ),
        ("TokenResponse", "token_type", one_of(&["Bearer"])),
        ("TokenResponse", "expires_in", at_least(1)),
        ("TokenResponse", "refresh_expires_in", at_least(1)),
        ("UserResponse", "email", email()),
        ("UserResponse", "pending_email", email()),
        ("UserResponse", "role", one_of(&Role::ALL)),
        ("UserResponse", "gender", one_of(&Gender::ALL)),
        // Clinics and doctors.
        ("ClinicRequest", "name", text(MAX_CLINIC_NAME_CHARS, false)),
        ("ClinicRequest", "city", text(MAX_CITY_CHARS, false)),
        ("ClinicRequest", "address", text(MAX_ADDRESS_CHARS, false)),
        ("ClinicRequest", "time_zone", time_zones()),
        (
            "RatingSummaryResponse",
            "average",
            range(Rating::MIN, Rating::MAX),
        ),
        ("RatingSummaryResponse", "count", at_least(0)),
        // Slots.
        (
            "GenerateSlotsRequest",
            "weekdays",
            json!({
                "minItems": 1,
                "items": {
                    "type": "string",
                    "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                },
                "description": "Case and surrounding white space are ignored.",
            }),
        ),
        ("GenerateSlotsRequest", "start_time", local_time()),
        ("GenerateSlotsRequest", "end_time", local_time()),
        (
            "GenerateSlotsRequest",
            "slot_minutes",
            range(
                i64::from(MIN_TEMPLATE_SLOT_MINUTES),
                i64::from(MAX_TEMPLATE_SLOT_MINUTES),
            ),
        ),
        (
            "GenerateSlotsRequest",
            "buffer_minutes",
            range(0, i64::from(MAX_BUFFER_MINUTES)),
        ),
        ("GenerationResponse", "created", at_least(0)),
        ("GenerationResponse", "skipped", at_least(0)),
        ("SlotResponse", "status", one_of(SlotStatus::ALL)),
        // Appointments and reviews.
        ("BookRequest", "reason", text(MAX_REASON_CHARS, true)),
        ("CancelRequest", "reason", text(MAX_REASON_CHARS, true)),
        ("RescheduleRequest", "reason", text(MAX_REASON_CHARS, true)),
        (
            "AppointmentResponse",
            "status",
            one_of(AppointmentStatus::ALL),
        ),
        ("ReviewRequest", "rating", range(Rating::MIN, Rating::MAX)),
        ("ReviewRequest", "text", text(MAX_REVIEW_CHARS, true)),
        (
            "ReviewRequest",
            "show_author_as",
            one_of(AuthorShownAs::ALL),
        ),
        (
            "ReviewResponse",
            "author_shown_as",
            one_of(AuthorShownAs::ALL),
        ),
        ("ReviewResponse", "rating", range(Rating::MIN, Rating::MAX)),
        // Clinic policies, attendance, the waitlist.
        (
            "AttendanceRequest",
            "outcome",
            one_of(&["attended", "no_show"]),
        ),
        (
            "DayAppointment",
            "status",
            one_of(&["booked", "completed", "no_show"]),
        ),
        ("DayAppointment", "patient_age", at_least(0)),
        (
            "WaitlistEntryResponse",
            "status",
            one_of(&["waiting", "offered", "booked", "left"]),
        ),
        // Ops.
        ("HealthResponse", "status", one_of(&["ok"])),
    ];
    {
        use crate::domain::booking::policy_bounds::*;
        let bound = |(min, max): (i32, i32)| range(i64::from(min), i64::from(max));
        for schema in [
            "ClinicPolicyRequest",
            "ClinicPolicyResponse",
            "DoctorPolicyRequest",
            "DoctorPolicyResponse",
        ] {
            rules.push((schema, "min_notice_minutes", bound(MINUTES)));
            rules.push((schema, "horizon_days", bound(HORIZON_DAYS)));
            rules.push((schema, "change_deadline_minutes", bound(MINUTES)));
        }
        for schema in ["ClinicPolicyRequest", "ClinicPolicyResponse"] {
            rules.push((schema, "max_active_per_patient", bound(MAX_ACTIVE)));
            rules.push((schema, "no_show_limit", bound(NO_SHOW_LIMIT)));
            rules.push((schema, "no_show_window_days", bound(NO_SHOW_WINDOW_DAYS)));
        }
    }
    for schema in ["RegisterRequest", "PatientRequest", PATIENT_REPLACEMENT] {
        rules.extend(profile(schema));
    }
    rules.extend(doctor("DoctorRequest"));
    for schema in ["DoctorResponse", "DoctorRecordResponse"] {
        rules.push((schema, "status", one_of(DoctorStatus::ALL)));
        rules.push((
            schema,
            "years_of_experience",
            range(0, i64::from(MAX_YEARS_OF_EXPERIENCE)),
        ));
    }
    for schema in [
        "AppointmentPage",
        "ClinicPage",
        "DoctorPage",
        "PatientPage",
        "ReviewPage",
    ] {
        rules.extend(page(schema));
    }
    rules
}

/// (path, method, query parameter, keywords); path `*` is every operation that has
/// the parameter.
fn parameter_rules() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let filter = json!({ "maxLength": MAX_FILTER_CHARS, "pattern": NO_NUL });
    let audit_text = json!({
        "maxLength": crate::transport::http::dto::audit::MAX_AUDIT_FILTER_CHARS,
        "pattern": format!("^[^{ALL_CONTROLS}]*$"),
    });
    vec![
        ("*", "*", "page", range(1, i64::from(MAX_PAGE))),
        ("*", "*", "per_page", range(1, i64::from(MAX_PER_PAGE))),
        (
            "/api/v1/appointments",
            "get",
            "status",
            one_of(AppointmentStatus::ALL),
        ),
        (
            "/api/v1/doctors",
            "get",
            "status",
            one_of(DoctorStatus::ALL),
        ),
        (
            "/api/v1/doctors",
            "get",
            "sort",
            one_of(&["name", "rating"]),
        ),
        ("/api/v1/doctors", "get", "name", filter.clone()),
        ("/api/v1/doctors", "get", "specialty", filter.clone()),
        ("/api/v1/doctors", "get", "city", filter.clone()),
        (
            "/api/v1/doctors/{id}/slots",
            "get",
            "status",
            one_of(SlotStatus::ALL),
        ),
        ("/api/v1/patients", "get", "q", filter),
        ("/api/v1/audit", "get", "entity_type", audit_text.clone()),
        ("/api/v1/audit", "get", "entity_id", audit_text.clone()),
        ("/api/v1/audit", "get", "action", audit_text.clone()),
        ("/api/v1/audit", "get", "page_token", audit_text),
        (
            "/api/v1/clinics",
            "get",
            "city",
            json!({ "pattern": NO_NUL }),
        ),
        (
            "/api/v1/appointments",
            "post",
            "Idempotency-Key",
            json!({ "pattern": format!("^[!-~]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}$") }),
        ),
    ]
}

fn apply_parameter_rules(spec: &mut Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, method, name, rule) in parameter_rules() {
        let mut applied = false;
        let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else {
            return vec!["/paths".into()];
        };
        for (p, item) in paths.iter_mut() {
            if path != "*" && p != path {
                continue;
            }
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (m, op) in item.iter_mut() {
                if method != "*" && m != method {
                    continue;
                }
                for param in op
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if param["name"] == name {
                        if let Some(schema) = param.get_mut("schema").and_then(Value::as_object_mut)
                        {
                            merge(schema, rule.clone());
                            applied = true;
                        }
                    }
                }
            }
        }
        if !applied {
            missing.push(format!("{method} {path} ?{name}"));
        }
    }
    missing
}

fn password_policy_rule() -> String {
    format!(
        "at most {MAX_PASSWORD_BYTES} bytes in UTF-8; not one of the {} most common passwords; \
         must not contain the e-mail address, its part before `@`, or a part of 4 characters \
         or more of the name, whatever the case",
        password_policy::common_password_count()
    )
}

/// A field and, in words, a rule the server applies to it.
type FieldRule = (&'static str, String);

/// (path, method, [(field, rule)]): rules that no JSON Schema keyword states, because
/// they relate two fields, depend on stored data or on today's date. Each is refused
/// with 400 `validation_failed` whose `details` name the field.
fn operation_rules() -> Vec<(&'static str, &'static str, Vec<FieldRule>)> {
    let policy = password_policy_rule;
    let birth_date = || format!("not in the future and at most {MAX_AGE_YEARS} calendar years ago");
    let token = || {
        "must be the token of a link that is still valid: unknown, expired, superseded or used tokens are refused".to_owned()
    };
    let after_from = || "must be after `from`".to_owned();
    let doctor_refs = || {
        vec![
            ("clinic_id", "must name an existing clinic".to_owned()),
            ("user_id", "must name an existing user".to_owned()),
        ]
    };
    vec![
        (
            "/api/v1/auth/register",
            "post",
            vec![("password", policy()), ("birth_date", birth_date())],
        ),
        (
            "/api/v1/auth/login",
            "post",
            vec![(
                "password",
                format!("at most {MAX_PASSWORD_BYTES} bytes in UTF-8"),
            )],
        ),
        (
            "/api/v1/auth/verify-email",
            "post",
            vec![("token", token())],
        ),
        (
            "/api/v1/auth/password-reset/confirm",
            "post",
            vec![("token", token()), ("new_password", policy())],
        ),
        (
            "/api/v1/me",
            "patch",
            vec![
                ("birth_date", birth_date()),
                ("new_password", policy()),
                (
                    "current_password",
                    "required, and must be the account's password, with `email` or `new_password`"
                        .to_owned(),
                ),
            ],
        ),
        (
            "/api/v1/patients",
            "post",
            vec![("password", policy()), ("birth_date", birth_date())],
        ),
        (
            "/api/v1/patients/{id}",
            "put",
            vec![("birth_date", birth_date())],
        ),
        ("/api/v1/doctors", "post", doctor_refs()),
        ("/api/v1/doctors/{id}", "put", doctor_refs()),
        (
            "/api/v1/doctors/{id}/slots",
            "post",
            vec![(
                "ends_at",
                format!(
                    "after `starts_at`, {MIN_SLOT_RANGE_MINUTES} minutes to {} hours later; \
                     both on whole minutes",
                    MAX_SLOT_RANGE_MINUTES / 60
                ),
            )],
        ),
        (
            "/api/v1/doctors/{id}/slots/generate",
            "post",
            vec![
                (
                    "to",
                    format!(
                        "not before `from`, and at most {MAX_TEMPLATE_DAYS} days from `from`, \
                         both included"
                    ),
                ),
                ("end_time", "after `start_time`".to_owned()),
                (
                    "slot_minutes",
                    "must fit at least once between `start_time` and `end_time`".to_owned(),
                ),
            ],
        ),
        (
            "/api/v1/doctors/{id}/slots",
            "get",
            vec![(
                "to",
                format!(
                    "after `from` (default now; `to` defaults to {DEFAULT_LIST_DAYS} days \
                     later), and at most {MAX_LIST_DAYS} days after it"
                ),
            )],
        ),
        ("/api/v1/appointments", "get", vec![("to", after_from())]),
        (
            "/api/v1/audit",
            "get",
            vec![
                ("to", after_from()),
                ("entity_id", "only with `entity_type`".to_owned()),
                (
                    "page_token",
                    "the `next_page_token` of an earlier page of the same query".to_owned(),
                ),
            ],
        ),
        (
            "/api/v1/appointments/{id}/cancel",
            "post",
            vec![(
                "reason",
                "required (not blank) when an admin cancels".to_owned(),
            )],
        ),
        (
            "/api/v1/me/waitlist",
            "post",
            vec![(
                "to_date",
                format!(
                    "not before `from_date`, less than {} days after it, and not in the past",
                    crate::domain::waitlist::MAX_RANGE_DAYS
                ),
            )],
        ),
    ]
}

fn apply_operation_rules(spec: &mut Value) -> Vec<String> {
    let mut missing = Vec::new();
    let mut by_operation: BTreeMap<String, Vec<FieldRule>> = BTreeMap::new();
    for (path, method, rules) in operation_rules() {
        by_operation
            .entry(format!("/paths/{}/{method}", path.replace('/', "~1")))
            .or_default()
            .extend(rules);
    }
    for (pointer, rules) in by_operation {
        let Some(op) = spec.pointer_mut(&pointer).and_then(Value::as_object_mut) else {
            missing.push(pointer);
            continue;
        };
        let list: Vec<String> = rules
            .iter()
            .map(|(field, rule)| format!("- `{field}`: {rule}"))
            .collect();
        let note = format!(
            "Also refused with 400 `validation_failed` naming the field (rules the schema \
             cannot state):\n{}",
            list.join("\n")
        );
        let description = match op.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
            _ => note,
        };
        op.insert("description".into(), json!(description));
        op.insert(
            "x-medbook-rules".into(),
            Value::Array(
                rules
                    .into_iter()
                    .map(|(field, rule)| json!({ "field": field, "rule": rule }))
                    .collect(),
            ),
        );
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::http::dto;

    fn document() -> (Value, Vec<String>) {
        let mut spec = crate::transport::http::paperclip_document();
        let missing = apply(&mut spec);
        (spec, missing)
    }

    #[test]
    fn every_rule_names_a_part_of_the_document() {
        let (_, missing) = document();
        assert!(missing.is_empty(), "rules without a target: {missing:?}");
    }

    /// Rules are stated on named schemas; an object left inline would miss them.
    #[test]
    fn no_object_schema_is_left_inline() {
        fn walk(schema: &Value, at: &str) {
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                let at = format!("{at}.{name}");
                for s in [property, &property["items"]] {
                    assert!(s.get("properties").is_none(), "{at} is an inline object");
                }
            }
        }
        let (spec, _) = document();
        for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
            walk(schema, name);
        }
    }

    /// `additionalProperties: false` on every request body is true of every request DTO.
    #[test]
    fn every_request_body_refuses_unknown_fields() {
        use paperclip::v2::schema::Apiv2Schema;
        fn refuses<T: serde::de::DeserializeOwned + Apiv2Schema>() -> String {
            let err = serde_json::from_value::<T>(json!({ "surely_unknown": 1 }))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("unknown field"), "{:?}: {err}", T::name());
            T::name().unwrap()
        }
        let checked: BTreeSet<String> = [
            refuses::<dto::auth::RegisterRequest>(),
            refuses::<dto::auth::LoginRequest>(),
            refuses::<dto::auth::RefreshRequest>(),
            refuses::<dto::auth::VerifyEmailRequest>(),
            refuses::<dto::auth::PasswordResetRequest>(),
            refuses::<dto::auth::PasswordResetConfirmRequest>(),
            refuses::<dto::auth::UpdateMeRequest>(),
            refuses::<dto::patients::PatientRequest>(),
            refuses::<dto::catalog::ClinicRequest>(),
            refuses::<dto::catalog::DoctorRequest>(),
            refuses::<dto::slots::SlotRequest>(),
            refuses::<dto::slots::GenerateSlotsRequest>(),
            refuses::<dto::appointments::BookRequest>(),
            refuses::<dto::appointments::CancelRequest>(),
            refuses::<dto::appointments::RescheduleRequest>(),
            refuses::<dto::appointments::ReviewRequest>(),
            refuses::<dto::policies::ClinicPolicyRequest>(),
            refuses::<dto::policies::DoctorPolicyRequest>(),
            refuses::<dto::waitlist::JoinWaitlistRequest>(),
            refuses::<dto::waitlist::AttendanceRequest>(),
        ]
        .into_iter()
        .chain([PATIENT_REPLACEMENT.to_owned()])
        .collect();
        let (spec, _) = document();
        let closed: BTreeSet<String> = spec["components"]["schemas"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, s)| s["additionalProperties"] == json!(false))
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(closed, body_schemas(&spec, "requestBody"));
        assert_eq!(
            closed, checked,
            "a request body whose DTO is not checked here"
        );
    }

    #[test]
    fn every_time_zone_in_the_enum_is_accepted_and_common_ones_are_there() {
        let zones = time_zones();
        let zones: Vec<&str> = zones["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z.as_str().unwrap())
            .collect();
        assert!(zones.iter().all(|z| parse_time_zone(z).is_ok()));
        for zone in ["Europe/Berlin", "America/New_York", "UTC", "Etc/UTC"] {
            assert!(zones.contains(&zone), "{zone}");
        }
        assert!(!zones.contains(&"CET") && !zones.contains(&"Etc/GMT+1"));
    }

    #[test]
    fn the_role_list_is_every_role() {
        for name in Role::ALL {
            assert_eq!(name.parse::<Role>().unwrap().as_str(), name);
        }
    }
}
