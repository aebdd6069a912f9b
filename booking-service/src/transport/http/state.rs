//! What handlers share: the use cases, the caller check and the metrics registry.

use super::metrics::Metrics;
use crate::service::accounts::AccountService;
use crate::service::appointments::AppointmentService;
use crate::service::audit_log::AuditLogService;
use crate::service::auth::AuthService;
use crate::service::authenticate::Authenticator;
use crate::service::catalog::CatalogService;
use crate::service::patients::PatientService;
use crate::service::reviews::ReviewService;
use crate::service::schedule::DaySchedule;
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
    pub schedule: Arc<DaySchedule>,
    pub policies: Arc<crate::service::policies::PolicyService>,
    pub waitlist: Arc<crate::service::waitlist::WaitlistService>,
    pub calendar: Arc<crate::service::calendar::CalendarService>,
    /// Who is calling, from a bearer token (shared with gRPC).
    pub authenticator: Arc<Authenticator>,
    /// The audit log, read by `GET /api/v1/audit`.
    pub audit_log: Arc<AuditLogService>,
    pub metrics: Arc<Metrics>,
    /// Whose `X-Forwarded-For` names the client (`http.trusted_proxies`).
    pub trusted_proxies: super::client_ip::TrustedProxies,
}
