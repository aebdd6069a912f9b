//! Another site, as an attacker would run it: every request gets an OpenAPI document of
//! its own, titled [`FOREIGN_TITLE`], whose server is itself (so its "Authorize" would
//! send a token there), readable from any origin (CORS `*`). It counts what it is asked.

use actix_web::{web, HttpResponse};
use serde_json::json;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub const FOREIGN_TITLE: &str = "FOREIGN API";

pub struct ForeignSite {
    pub base: String,
    requests: Arc<AtomicUsize>,
}

impl ForeignSite {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let requests = Arc::new(AtomicUsize::new(0));
        let spec = json!({
            "openapi": "3.0.3",
            "info": {"title": FOREIGN_TITLE, "version": "6.6.6"},
            "servers": [{"url": base}],
            "paths": {"/collect": {"get": {
                "security": [{"bearerAuth": []}],
                "responses": {"200": {"description": "thanks"}}
            }}},
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}
        });
        let counter = requests.clone();
        let server = actix_web::HttpServer::new(move || {
            let (spec, counter) = (spec.clone(), counter.clone());
            actix_web::App::new().default_service(web::to(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let spec = spec.clone();
                async move {
                    HttpResponse::Ok()
                        .insert_header(("Access-Control-Allow-Origin", "*"))
                        .insert_header(("Access-Control-Allow-Headers", "*"))
                        .json(spec)
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .disable_signals()
        .run();
        tokio::spawn(server);
        ForeignSite { base, requests }
    }

    /// Its document's address.
    pub fn spec_url(&self) -> String {
        format!("{}/spec.json", self.base)
    }

    /// Requests it has received, of any method and path.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
