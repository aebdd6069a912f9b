//! `/openapi.json` documents every endpoint and every rule the server enforces on
//! input; Swagger UI is served without a CDN.

use crate::helpers::spawn_app;
use serde_json::{json, Value};

/// The whole document, so that every contract change shows in review. After an
/// intended change, `INSTA_UPDATE=always cargo test -p booking-service --test api --
/// openapi` rewrites `snapshots/api__openapi__openapi.snap` (or use `cargo insta
/// review`); `scripts/test.sh` and CI never write it, so a changed document fails them.
#[test]
fn the_document_matches_its_snapshot() {
    let doc = booking_service::transport::http::openapi_document();
    insta::assert_json_snapshot!("openapi", doc);
}

/// What the issue found missing: enums, bounds, lengths, formats, closed bodies,
/// nullable fields, an optional token on logout.
#[tokio::test]
async fn the_document_states_what_the_server_enforces() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert_eq!(doc, booking_service::transport::http::openapi_document());
    let schemas = &doc["components"]["schemas"];
    let query = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(
        query("/api/v1/appointments", "status")["enum"],
        json!(["booked", "cancelled", "completed", "no_show"])
    );
    for path in ["/api/v1/doctors", "/api/v1/clinics", "/api/v1/patients"] {
        assert_eq!(query(path, "page")["minimum"], 1, "{path}");
        assert_eq!(query(path, "per_page")["maximum"], 100, "{path}");
    }
    let register = &schemas["RegisterRequest"];
    assert_eq!(register["additionalProperties"], false);
    assert_eq!(register["properties"]["email"]["format"], "email");
    assert_eq!(register["properties"]["password"]["minLength"], 8);
    assert_eq!(register["properties"]["full_name"]["maxLength"], 200);
    assert_eq!(register["properties"]["birth_date"]["nullable"], true);
    // The linked account is for admins only.
    let record = &schemas["DoctorRecordResponse"];
    assert_eq!(record["properties"]["user_id"]["nullable"], true);
    assert!(record["required"]
        .as_array()
        .unwrap()
        .contains(&json!("user_id")));
    let doctor = &schemas["DoctorResponse"];
    assert!(doctor["properties"].get("user_id").is_none());
    let review = &schemas["ReviewResponse"];
    for private in ["appointment_id", "patient_name", "patient_id", "user_id"] {
        assert!(review["properties"].get(private).is_none(), "{private}");
    }
    assert_eq!(
        doctor["properties"]["rating"]["$ref"],
        "#/components/schemas/RatingSummaryResponse"
    );
    assert_eq!(
        schemas["RatingSummaryResponse"]["properties"]["average"]["nullable"],
        true
    );
    assert_eq!(
        schemas["UserResponse"]["properties"]["birth_date"]["nullable"],
        true
    );
    assert_eq!(
        doc["paths"]["/api/v1/auth/logout"]["post"]["security"],
        json!([{}, {"bearerAuth": []}]),
        "logout works with or without a token"
    );
    let slots = &doc["paths"]["/api/v1/doctors/{id}/slots"]["post"];
    assert_eq!(slots["x-medbook-rules"][0]["field"], "ends_at");
}

#[tokio::test]
async fn the_document_covers_every_endpoint_with_schemas_errors_and_bearer_auth() {
    let app = spawn_app().await;
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me", "patch"),
        ("/api/v1/patients", "get"),
        ("/api/v1/patients", "post"),
        ("/api/v1/patients/{id}", "get"),
        ("/api/v1/patients/{id}", "put"),
        ("/api/v1/patients/{id}", "delete"),
        ("/api/v1/clinics", "get"),
        ("/api/v1/clinics", "post"),
        ("/api/v1/clinics/{id}", "get"),
        ("/api/v1/clinics/{id}", "put"),
        ("/api/v1/clinics/{id}", "delete"),
        ("/api/v1/doctors", "get"),
        ("/api/v1/doctors", "post"),
        ("/api/v1/doctors/{id}", "get"),
        ("/api/v1/doctors/{id}", "put"),
        ("/api/v1/doctors/{id}", "delete"),
        ("/api/v1/doctors/{id}/reviews", "get"),
        ("/api/v1/doctors/{id}/reviews", "post"),
        ("/api/v1/doctors/{id}/slots", "get"),
        ("/api/v1/doctors/{id}/slots", "post"),
        ("/api/v1/doctors/{id}/slots/generate", "post"),
        ("/api/v1/slots/{id}", "delete"),
        ("/api/v1/slots/{id}/block", "post"),
        ("/api/v1/slots/{id}/unblock", "post"),
        ("/api/v1/appointments", "get"),
        ("/api/v1/appointments", "post"),
        ("/api/v1/appointments/{id}", "get"),
        ("/api/v1/appointments/{id}/cancel", "post"),
        ("/api/v1/appointments/{id}/reschedule", "post"),
        ("/api/v1/auth/verify-email", "post"),
        ("/api/v1/auth/password-reset", "post"),
        ("/api/v1/auth/password-reset/confirm", "post"),
        ("/api/v1/me/email-verification", "post"),
        ("/health", "get"),
    ];
    for (path, method) in expected {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} undocumented");
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {path} has no responses");
        if path.starts_with("/api/") {
            assert!(
                responses.contains_key("500"),
                "{method} {path} lacks error responses"
            );
        }
    }
    let secured = &doc["paths"]["/api/v1/patients"]["get"]["security"];
    assert_eq!(secured[0]["bearerAuth"], serde_json::json!([]));
    assert!(doc["paths"]["/api/v1/auth/login"]["post"]["security"].is_null());
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let register = &doc["paths"]["/api/v1/auth/register"]["post"];
    assert!(
        register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("RegisterRequest")
    );
    assert!(register["responses"]["202"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    for ops_only in ["/ready", "/metrics"] {
        assert!(doc["paths"][ops_only].is_null(), "{ops_only} is not public");
    }
    let book = &doc["paths"]["/api/v1/appointments"]["post"];
    assert!(book["responses"]["201"].is_object() && book["responses"]["422"].is_object());
    let params = book["parameters"].as_array().unwrap();
    assert!(params
        .iter()
        .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header" && p["required"] != true));
}

/// The access table and the document name the same operations, and the document
/// states each rule.
#[tokio::test]
async fn every_operation_states_who_may_call_it() {
    use booking_service::transport::http::access::{Access, POLICY};
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented += 1;
            let access = POLICY
                .iter()
                .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && p == path)
                .map(|(_, _, a)| *a)
                .unwrap_or_else(|| panic!("{method} {path} has no access rule"));
            match access {
                Access::Public => {
                    assert!(op["x-medbook-roles"].is_null(), "{method} {path} is public");
                }
                Access::Roles(roles) => {
                    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                    assert_eq!(
                        op["x-medbook-roles"],
                        serde_json::json!(names),
                        "{method} {path}"
                    );
                    assert_eq!(op["security"][0]["bearerAuth"], serde_json::json!([]));
                    assert!(op["responses"]["403"].is_object(), "{method} {path}");
                    assert!(
                        op["description"]
                            .as_str()
                            .unwrap()
                            .contains("Requires an access token of role"),
                        "{method} {path}"
                    );
                }
            }
        }
    }
    let api_rules = POLICY
        .iter()
        .filter(|(_, p, _)| p.starts_with("/api/") || *p == "/health")
        .count();
    assert_eq!(
        documented, api_rules,
        "an API rule without a documented operation"
    );
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app().await;
    let res = app.get("/swagger", None).await;
    assert_eq!(res.status(), 308);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/swagger/index.html?url=/openapi.json");
    let res = app.get(&location, None).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui-bundle.js"));
    assert!(!html.contains("<script src=\"http"), "no external scripts");
    let js = app.get("/swagger/swagger-ui-bundle.js", None).await;
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 100_000);
    assert_eq!(
        app.get("/swagger/does-not-exist.js", None).await.status(),
        404
    );
}
