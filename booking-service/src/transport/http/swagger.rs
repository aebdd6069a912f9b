//! Swagger UI, for people reading the API: Swagger UI's own files vendored from the
//! `swagger-ui-dist` npm package (`scripts/vendor-swagger-ui.sh`: an exact version
//! checked against a pinned checksum, see `assets/swagger-ui/dist/VERSION`), with our
//! own page and initializer, all embedded in the binary.
//!
//! The page shows this service's document and nothing else. The initializer names
//! `/openapi.json` and turns Swagger UI's query configuration off, and the page's
//! [`CONTENT_SECURITY_POLICY`] lets it load scripts, styles and data from this origin
//! only; so `?url=http://elsewhere/spec.json` neither changes the document shown nor
//! makes the browser fetch anything from elsewhere. (paperclip's embedded Swagger UI
//! 3.52 rendered whatever `?url=` named, and its "Authorize" then sent the caller's
//! token wherever that document pointed.)
//!
//! Plain actix routes, outside the OpenAPI document; `access::POLICY` lists them. With
//! `http.swagger_ui` off (the production profile's default) they are not routed at all
//! and `/swagger…` answers the JSON 404; `/openapi.json` is served either way.

use super::error::ApiError;
use super::middleware::headers::Immutable;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

pub const UI_PATH: &str = "/swagger";
/// The page, under [`UI_PATH`].
pub const PAGE: &str = "index.html";

/// Where `/swagger` and `/swagger/` send the browser: the address paperclip's UI
/// redirected to, kept for bookmarks (and for browsers that cached that permanent
/// redirect). The page ignores the query.
const PAGE_REDIRECT: &str = "/swagger/index.html?url=/openapi.json";

/// The page's policy. Swagger UI 5 runs under it as it is, checked in a real browser
/// (`tests/browser`): no inline script or style, no `eval`; its CSS embeds its icons as
/// `data:` images; it fetches only `/openapi.json` and, with "Try it out", this API.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A file served under [`UI_PATH`].
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal, $dir:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/swagger-ui/",
                $dir,
                $name
            )),
        }
    };
}

/// Every file the page loads; links to them carry a hash of their content
/// ([`version`]), so each may be cached for a year.
static ASSETS: &[Asset] = &[
    asset!(
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        "dist/"
    ),
    asset!("swagger-ui.css", "text/css; charset=utf-8", "dist/"),
    asset!("favicon-16x16.png", "image/png", "dist/"),
    asset!("favicon-32x32.png", "image/png", "dist/"),
    asset!("medbook-init.js", "text/javascript; charset=utf-8", ""),
];

const PAGE_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/swagger-ui/index.html"
));

/// The first 16 hex digits of the SHA-256 of `body`: the `?v=` of its links.
fn version(body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    digest.chars().take(16).collect()
}

/// The page, each `{{file}}` replaced by that file's [`version`]; built once.
static PAGE_HTML: LazyLock<String> = LazyLock::new(|| {
    ASSETS.iter().fold(PAGE_TEMPLATE.to_owned(), |page, asset| {
        page.replace(&format!("{{{{{}}}}}", asset.name), &version(asset.body))
    })
});

/// The routes, when Swagger UI is on.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(UI_PATH).route(web::get().to(redirect)))
        .service(web::resource("/swagger/").route(web::get().to(redirect)))
        .service(web::resource("/swagger/{file}").route(web::get().to(file)));
}

async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, PAGE_REDIRECT))
        .finish()
}

/// The page, or one of its [`ASSETS`]; anything else is the JSON 404.
async fn file(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    if name == PAGE {
        return Ok(page());
    }
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::from_status(StatusCode::NOT_FOUND))?;
    let mut res = HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(asset.body);
    res.extensions_mut().insert(Immutable);
    Ok(res)
}

fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(PAGE_HTML.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_of_the_page_names_a_served_file_with_its_version() {
        let page = PAGE_HTML.as_str();
        assert!(!page.contains("{{"), "an unknown file in the page: {page}");
        for asset in ASSETS {
            let link = format!("./{}?v={}", asset.name, version(asset.body));
            assert!(page.contains(&link), "{} is not linked", asset.name);
        }
        assert!(!page.contains("<script>"), "no inline script");
        assert!(!page.contains("<style"), "no inline style");
    }

    #[test]
    fn the_initializer_loads_our_document_and_ignores_the_query() {
        let init = ASSETS
            .iter()
            .find(|a| a.name == "medbook-init.js")
            .map(|a| String::from_utf8_lossy(a.body).into_owned())
            .unwrap();
        assert!(init.contains(r#"url: "/openapi.json""#), "{init}");
        assert!(init.contains("queryConfigEnabled: false"), "{init}");
        assert!(init.contains("validatorUrl: null"), "{init}");
    }

    #[test]
    fn the_vendored_version_is_the_pinned_one() {
        let stamp = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/swagger-ui/dist/VERSION"
        ));
        let script = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/vendor-swagger-ui.sh"
        ));
        let pinned = script
            .lines()
            .find_map(|l| l.strip_prefix("SWAGGER_UI_VERSION="))
            .unwrap();
        assert!(
            stamp.starts_with(&format!("swagger-ui-dist {pinned}\n")),
            "dist/ is not the version the script pins ({pinned}): {stamp}"
        );
    }
}
