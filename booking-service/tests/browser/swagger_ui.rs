//! Swagger UI shows our document and only ours, under its Content-Security-Policy, from
//! files served by the binary; switched off, it is not there at all.
//!
//! The finding this guards: `/swagger/index.html?url=http://other-host/spec.json` made
//! paperclip's Swagger UI (3.52) render another site's document on our origin, whose
//! "Authorize" then sent a patient's token wherever that document pointed.

use crate::chromium::Browser;
use crate::foreign::{ForeignSite, FOREIGN_TITLE};
use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use booking_service::transport::http::swagger;
use fantoccini::Locator;
use futures_util::FutureExt;
use reqwest::Response;
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// The title of our document (`openapi::base_spec`), as Swagger UI renders it.
const OUR_TITLE: &str = "medbook booking API";
/// Chromium's start, the 1.8 MB bundle and the render, on a loaded debug machine.
const RENDER_TIMEOUT: Duration = Duration::from_secs(60);
/// The policy of every response that brings none of its own (JSON).
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

#[tokio::test]
async fn a_foreign_document_named_in_the_query_is_neither_shown_nor_fetched() {
    let app = spawn_app().await;
    let foreign = ForeignSite::start().await;
    let browser = Browser::start().await;
    let outcome = AssertUnwindSafe(shows_only_our_document(&app, &foreign, &browser))
        .catch_unwind()
        .await;
    browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn shows_only_our_document(app: &TestApp, foreign: &ForeignSite, browser: &Browser) {
    let page = app.url(&format!("/swagger/index.html?url={}", foreign.spec_url()));
    browser.client.goto(&page).await.unwrap();
    // Poll what the page shows until our title is rendered; the foreign one fails at once.
    let deadline = tokio::time::Instant::now() + RENDER_TIMEOUT;
    loop {
        let shown = text(
            browser,
            "return document.body ? document.body.innerText : ''",
        )
        .await;
        assert!(
            !shown.contains(FOREIGN_TITLE),
            "Swagger UI rendered the foreign document named in ?url= (the foreign site got \
             {} requests):\n{shown}",
            foreign.requests()
        );
        let title = text(
            browser,
            "const t = document.querySelector('.info .title'); return t ? t.innerText : ''",
        )
        .await;
        if title.contains(OUR_TITLE) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "Swagger UI did not render {OUR_TITLE:?} within {RENDER_TIMEOUT:?}; the page \
                 shows:\n{shown}\nconsole: {:#?}",
                browser.console().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everything the page loaded came from our origin, our document included.
    let loaded = browser
        .client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
    assert!(
        loaded.contains(&app.url("/openapi.json")),
        "our document was not loaded: {loaded:?}"
    );
    for url in &loaded {
        assert!(
            url.starts_with(&app.url("/")),
            "the page loaded {url} from elsewhere"
        );
    }
    // Swagger UI runs under the policy as it is: no error, no CSP violation, in the
    // console (it did not even try to reach the foreign site).
    let console = browser.console().await;
    let problems: Vec<&Value> = console
        .iter()
        .filter(|m| m["level"] == "SEVERE" || m["source"] == "security")
        .collect();
    assert!(problems.is_empty(), "console: {problems:#?}");
    // Our bearer scheme is there to authorize with.
    browser
        .client
        .find(Locator::Css(".auth-wrapper .authorize"))
        .await
        .unwrap();
    assert_eq!(foreign.requests(), 0, "the browser asked the foreign site");

    // The second line: even a script on the page cannot reach another origin.
    let attempt = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(() => done('fetched'), e => done('blocked: ' + e));",
            vec![json!(foreign.spec_url())],
        )
        .await
        .unwrap();
    assert!(
        attempt.as_str().is_some_and(|a| a.starts_with("blocked")),
        "a fetch from the page to another origin: {attempt}"
    );
    let console = browser.console().await;
    assert!(
        console.iter().any(|m| m["source"] == "security"
            && m["message"]
                .as_str()
                .is_some_and(|s| s.contains("connect-src"))),
        "the policy, not the network, stopped it: {console:#?}"
    );
    assert_eq!(foreign.requests(), 0, "the browser asked the foreign site");
}

async fn text(browser: &Browser, script: &str) -> String {
    let value = browser.client.execute(script, vec![]).await.unwrap();
    value.as_str().unwrap_or_default().to_owned()
}

fn header<'a>(res: &'a Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} has no {name}", res.url()))
}

async fn assert_json_404(res: Response) {
    let url = res.url().clone();
    assert_eq!(res.status(), 404, "{url}");
    assert_eq!(header(&res, "content-type"), "application/json", "{url}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{url}");
}

#[tokio::test]
async fn the_page_has_its_policy_and_its_files_come_from_the_binary() {
    let app = spawn_app().await;
    for entry in ["/swagger", "/swagger/"] {
        let res = app.get(entry, None).await;
        assert_eq!(res.status(), 308, "{entry}");
        assert!(
            header(&res, "location").starts_with("/swagger/index.html"),
            "{entry}"
        );
    }
    let res = app.get("/swagger/index.html", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(
        header(&res, "content-security-policy"),
        swagger::CONTENT_SECURITY_POLICY
    );
    for directive in [
        "default-src 'none'",
        "script-src 'self';",
        "connect-src 'self';",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            swagger::CONTENT_SECURITY_POLICY.contains(directive),
            "{directive}"
        );
    }
    assert!(!swagger::CONTENT_SECURITY_POLICY.contains("unsafe"));
    assert_eq!(header(&res, "x-frame-options"), "DENY");
    assert_eq!(header(&res, "cache-control"), "no-store");
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");

    // Every file the page links to: the right type, cached for a year (the link
    // carries a hash of the content).
    let links: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("./"))
        .collect();
    assert_eq!(links.len(), 5, "{links:?}");
    for link in links {
        let path = format!("/swagger/{}", link.trim_start_matches("./"));
        let res = app.get(&path, None).await;
        assert_eq!(res.status(), 200, "{path}");
        let expected = match path.split('?').next().unwrap().rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("png") => "image/png",
            other => panic!("{path}: unexpected file type {other:?}"),
        };
        assert_eq!(header(&res, "content-type"), expected, "{path}");
        assert_eq!(
            header(&res, "cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert!(res.headers().get("pragma").is_none(), "{path}");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{path}");
        assert!(!res.bytes().await.unwrap().is_empty(), "{path}");
    }
    let bundle = app.get("/swagger/swagger-ui-bundle.js", None).await;
    assert!(bundle.bytes().await.unwrap().len() > 1_000_000);

    // Anything else under /swagger, paperclip's old files included: the JSON 404.
    for unknown in [
        "/swagger/does-not-exist.js",
        "/swagger/swagger-ui.css.map",
        "/swagger/swagger-ui-standalone-preset.js",
        "/swagger/oauth2-redirect.html",
        "/swagger/a/index.html",
    ] {
        assert_json_404(app.get(unknown, None).await).await;
    }

    // JSON answers bring no policy of their own: they get the strictest.
    for path in ["/openapi.json", "/api/v1/doctors", "/api/v1/me", "/nowhere"] {
        let res = app.get(path, None).await;
        assert_eq!(header(&res, "content-security-policy"), API_CSP, "{path}");
    }
}

#[tokio::test]
async fn switched_off_there_is_no_swagger_ui_but_the_document_is_served() {
    let app = spawn_app_with(|s| s.http.swagger_ui = Some(false)).await;
    for path in [
        "/swagger",
        "/swagger/",
        "/swagger/index.html",
        "/swagger/index.html?url=/openapi.json",
        "/swagger/swagger-ui-bundle.js",
        "/swagger/medbook-init.js",
    ] {
        assert_json_404(app.get(path, None).await).await;
    }
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["info"]["title"], OUR_TITLE);
}

/// The production profile's default, as the app reads it.
#[tokio::test]
async fn the_production_profile_serves_no_swagger_ui_unless_asked() {
    use booking_service::settings::Profile;
    let app = spawn_app_with(|s| s.profile = Profile::Production).await;
    assert_json_404(app.get("/swagger/index.html", None).await).await;
    assert_eq!(app.get("/openapi.json", None).await.status(), 200);
    let app = spawn_app_with(|s| {
        s.profile = Profile::Production;
        s.http.swagger_ui = Some(true);
    })
    .await;
    assert_eq!(app.get("/swagger/index.html", None).await.status(), 200);
}
