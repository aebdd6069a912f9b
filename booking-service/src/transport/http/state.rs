//! What handlers share: the use cases, the token verifier, the pool (for readiness)
//! and the metrics registry.

use super::metrics::Metrics;
use crate::repository::Db;
use crate::service::auth::AuthService;
use crate::service::patients::PatientService;
use crate::service::ports::TokenIssuer;
use std::sync::Arc;

pub struct AppState {
    pub auth: Arc<AuthService>,
    pub patients: Arc<PatientService>,
    pub issuer: Arc<dyn TokenIssuer>,
    pub db: Db,
    pub metrics: Arc<Metrics>,
    pub trust_forwarded_for: bool,
}
