//! The actix-web transport: routes, DTOs, extractors, middleware, OpenAPI.

pub mod access;
pub mod client_ip;
pub mod dto;
pub mod error;
pub mod extractors;
pub mod handlers;
pub mod link_pages;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod state;
pub mod swagger;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Condition};
use actix_web::{http::header, Error};
use handlers::{
    appointments, audit, auth, catalog, clinic_care, doctor, me, ops, patients, reviews, slots,
};
use paperclip::actix::{web, OpenApiExt};
use std::time::Duration;

/// HTTP settings the app itself needs (the server's are applied in `startup`).
#[derive(Debug, Clone)]
pub struct HttpAppConfig {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
    /// Serve Swagger UI at `/swagger` (`http.swagger_ui`); `/openapi.json` is served
    /// either way.
    pub swagger_ui: bool,
}

/// Every documented route. Each path is a resource, so a wrong method gets 405.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .service(web::resource("/auth/register").route(web::post().to(auth::register)))
            .service(web::resource("/auth/login").route(web::post().to(auth::login)))
            .service(web::resource("/auth/refresh").route(web::post().to(auth::refresh)))
            .service(web::resource("/auth/logout").route(web::post().to(auth::logout)))
            .service(web::resource("/auth/verify-email").route(web::post().to(auth::verify_email)))
            .service(
                web::resource("/auth/password-reset").route(web::post().to(auth::password_reset)),
            )
            .service(
                web::resource("/auth/password-reset/confirm")
                    .route(web::post().to(auth::password_reset_confirm)),
            )
            .service(
                web::resource("/me")
                    .route(web::get().to(me::get_me))
                    .route(web::patch().to(me::update_me)),
            )
            .service(
                web::resource("/me/email-verification")
                    .route(web::post().to(me::resend_verification)),
            )
            .service(
                web::resource("/patients")
                    .route(web::get().to(patients::list))
                    .route(web::post().to(patients::create)),
            )
            .service(
                web::resource("/patients/{id}")
                    .route(web::get().to(patients::get))
                    .route(web::put().to(patients::replace))
                    .route(web::delete().to(patients::delete)),
            )
            .service(
                web::resource("/clinics")
                    .route(web::get().to(catalog::list_clinics))
                    .route(web::post().to(catalog::create_clinic)),
            )
            .service(
                web::resource("/clinics/{id}")
                    .route(web::get().to(catalog::get_clinic))
                    .route(web::put().to(catalog::update_clinic))
                    .route(web::delete().to(catalog::delete_clinic)),
            )
            .service(
                web::resource("/doctors")
                    .route(web::get().to(catalog::search_doctors))
                    .route(web::post().to(catalog::create_doctor)),
            )
            .service(
                web::resource("/doctors/{id}")
                    .route(web::get().to(catalog::get_doctor))
                    .route(web::put().to(catalog::update_doctor))
                    .route(web::delete().to(catalog::delete_doctor)),
            )
            .service(
                web::resource("/doctors/{id}/reviews")
                    .route(web::get().to(reviews::list_reviews))
                    .route(web::post().to(reviews::create_review)),
            )
            .service(
                web::resource("/doctors/{id}/slots")
                    .route(web::get().to(slots::list))
                    .route(web::post().to(slots::create)),
            )
            .service(
                web::resource("/doctors/{id}/slots/generate")
                    .route(web::post().to(slots::generate)),
            )
            .service(web::resource("/slots/{id}").route(web::delete().to(slots::delete)))
            .service(web::resource("/slots/{id}/block").route(web::post().to(slots::block)))
            .service(web::resource("/slots/{id}/unblock").route(web::post().to(slots::unblock)))
            .service(
                web::resource("/appointments")
                    .route(web::get().to(appointments::list))
                    .route(web::post().to(appointments::book)),
            )
            .service(web::resource("/appointments/{id}").route(web::get().to(appointments::get)))
            .service(web::resource("/audit").route(web::get().to(audit::list)))
            .service(web::resource("/doctor/appointments").route(web::get().to(doctor::my_day)))
            .service(
                web::resource("/doctor/calendar-feed")
                    .route(web::post().to(clinic_care::rotate_doctor_feed)),
            )
            .service(
                web::resource("/appointments/{id}/attendance")
                    .route(web::post().to(clinic_care::record_attendance)),
            )
            .service(
                web::resource("/patients/{id}/appointments")
                    .route(web::post().to(clinic_care::book_for_patient)),
            )
            .service(
                web::resource("/clinics/{id}/policy")
                    .route(web::get().to(clinic_care::get_clinic_policy))
                    .route(web::put().to(clinic_care::put_clinic_policy)),
            )
            .service(
                web::resource("/doctors/{id}/policy")
                    .route(web::get().to(clinic_care::get_doctor_policy))
                    .route(web::put().to(clinic_care::put_doctor_policy)),
            )
            .service(
                web::resource("/me/waitlist")
                    .route(web::get().to(clinic_care::my_waitlist))
                    .route(web::post().to(clinic_care::join_waitlist)),
            )
            .service(
                web::resource("/me/waitlist/{id}")
                    .route(web::delete().to(clinic_care::leave_waitlist)),
            )
            .service(
                web::resource("/me/calendar-feed")
                    .route(web::post().to(clinic_care::rotate_my_feed)),
            )
            .service(
                web::resource("/appointments/{id}/cancel")
                    .route(web::post().to(appointments::cancel)),
            )
            .service(
                web::resource("/appointments/{id}/reschedule")
                    .route(web::post().to(appointments::reschedule)),
            ),
    )
    .service(web::resource("/health").route(web::get().to(ops::health)));
}

/// The operators' listener (`http.ops_addr`): liveness, readiness and metrics, apart
/// from the public API.
pub fn build_ops_app(
    probes: actix_web::web::Data<medbook_service_kit::ops::Probes>,
) -> actix_web::App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    actix_web::App::new()
        .app_data(probes)
        .configure(medbook_service_kit::ops::routes)
        .wrap(from_fn(middleware::json_errors::json_errors))
        .wrap(from_fn(middleware::request_id::request_id))
        .wrap(from_fn(middleware::headers::security_headers))
}

/// The finished OpenAPI 3 document of every route.
pub fn openapi_document() -> serde_json::Value {
    openapi::finish(paperclip_document())
}

/// The OpenAPI 3 document as paperclip writes it, before [`openapi::finish`].
fn paperclip_document() -> serde_json::Value {
    let mut doc = serde_json::Value::Null;
    let _ = actix_web::App::new()
        .wrap_api_with_spec(openapi::base_spec())
        .configure(routes)
        .with_raw_json_spec_v3(|app, spec| {
            doc = spec;
            app
        });
    doc
}

fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Builds the application with all routes, docs and middleware.
pub fn build_app(
    state: actix_web::web::Data<state::AppState>,
    doc: actix_web::web::Data<openapi::OpenApiDoc>,
    config: &HttpAppConfig,
) -> actix_web::App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    let swagger_ui = config.swagger_ui;
    actix_web::App::new()
        .wrap_api_with_spec(openapi::base_spec())
        .app_data(state)
        .app_data(doc)
        .app_data(error::extractor_configs::json(config.max_body_bytes))
        .app_data(error::extractor_configs::path())
        .app_data(error::extractor_configs::query())
        .app_data(actix_web::web::Data::new(
            middleware::timeout::RequestTimeout(config.request_timeout),
        ))
        .service(web::resource(openapi::SPEC_PATH).route(web::get().to(openapi::serve)))
        .configure(routes)
        .build()
        // Swagger UI: our own routes, outside the OpenAPI document (see `swagger`).
        .configure(|cfg| {
            if swagger_ui {
                swagger::routes(cfg);
            }
        })
        // HTML, not API: outside the OpenAPI document.
        .service(
            actix_web::web::resource(pages::VERIFY_PATH)
                .route(actix_web::web::get().to(pages::verify_form))
                .route(actix_web::web::post().to(pages::verify_submit)),
        )
        .service(
            actix_web::web::resource(pages::RESET_PATH)
                .route(actix_web::web::get().to(pages::reset_form))
                .route(actix_web::web::post().to(pages::reset_submit)),
        )
        .service(
            actix_web::web::resource(link_pages::MANAGE_PATH)
                .route(actix_web::web::get().to(link_pages::manage_page)),
        )
        .service(
            actix_web::web::resource(link_pages::MANAGE_CANCEL_PATH)
                .route(actix_web::web::post().to(link_pages::manage_cancel)),
        )
        .service(
            actix_web::web::resource(link_pages::MANAGE_RESCHEDULE_PATH)
                .route(actix_web::web::post().to(link_pages::manage_reschedule)),
        )
        .service(
            actix_web::web::resource(link_pages::OFFER_PATH)
                .route(actix_web::web::get().to(link_pages::offer_page))
                .route(actix_web::web::post().to(link_pages::offer_accept)),
        )
        .service(
            actix_web::web::resource("/calendar/{file}")
                .route(actix_web::web::get().to(link_pages::calendar_feed)),
        )
        .app_data(error::extractor_configs::form(config.max_body_bytes))
        .wrap(from_fn(access::authorize))
        .wrap(from_fn(middleware::timeout::timeout))
        .wrap(Condition::new(
            !config.cors_origins.is_empty(),
            cors(&config.cors_origins),
        ))
        .wrap(from_fn(middleware::json_errors::json_errors))
        .wrap(from_fn(middleware::catch_panic::catch_panic))
        .wrap(from_fn(middleware::observe::observe))
        .wrap(from_fn(middleware::request_id::request_id))
        .wrap(from_fn(middleware::headers::security_headers))
}
