//! What handlers share: the use cases, the token verifier, the pool (for readiness)
//! and the metrics registry.

use super::metrics::Metrics;
use crate::cache::RevokedTokens;
use crate::repository::Db;
use crate::service::accounts::AccountService;
use crate::service::appointments::AppointmentService;
use crate::service::auth::AuthService;
use crate::service::catalog::CatalogService;
use crate::service::outbox::EventPublisher;
use crate::service::patients::PatientService;
use crate::service::ports::TokenIssuer;
use crate::service::reviews::ReviewService;
use crate::service::slots::SlotService;
use std::sync::Arc;

pub struct AppState {
    pub auth: Arc<AuthService>,
    pub accounts: Arc<AccountService>,
    pub patients: Arc<PatientService>,
    pub catalog: Arc<CatalogService>,
    pub slots: Arc<SlotService>,
    pub appointments: Arc<AppointmentService>,
    pub reviews: Arc<ReviewService>,
    pub schedule: Arc<crate::service::schedule::DaySchedule>,
    /// Access tokens that were logged out.
    pub revoked: Arc<dyn RevokedTokens>,
    /// Refuse (503) instead of accept when the revocation store cannot be asked.
    pub deny_when_revocation_unknown: bool,
    pub issuer: Arc<dyn TokenIssuer>,
    pub db: Db,
    /// Asked by `/ready` whether the broker answers.
    pub publisher: Arc<dyn EventPublisher>,
    /// The audit-service, read by `GET /api/v1/audit`.
    pub audit: crate::audit_client::AuditClient,
    pub metrics: Arc<Metrics>,
    /// Whose `X-Forwarded-For` names the client (`http.trusted_proxies`).
    pub trusted_proxies: super::client_ip::TrustedProxies,
}
