//! Clinic policies: each clinic's own booking rules and each doctor's overrides of
//! the ones about their schedule (notice, horizon, deadline). Unset values fall back
//! to the service's defaults (`booking.*`); what a practice enforces is
//! [`BookingPolicy::for_practice`], decided inside each booking's transaction from the
//! rows these use cases write, so a change holds from the next request on every
//! replica.

use super::ports::RepoError;
use super::ServiceError;
use crate::domain::booking::{BookingPolicy, ClinicPolicy, DoctorPolicy};
use crate::domain::{ClinicId, DoctorId};
use async_trait::async_trait;
use std::sync::Arc;

#[async_trait]
pub trait PolicyRepository: Send + Sync {
    async fn clinic(&self, id: ClinicId) -> Result<Option<ClinicPolicy>, RepoError>;
    /// Replaces the clinic's policy (audited); `false` if there is no such clinic.
    async fn set_clinic(&self, id: ClinicId, policy: ClinicPolicy) -> Result<bool, RepoError>;
    /// The doctor's overrides and their clinic's policy.
    async fn doctor(&self, id: DoctorId)
        -> Result<Option<(DoctorPolicy, ClinicPolicy)>, RepoError>;
    async fn set_doctor(&self, id: DoctorId, policy: DoctorPolicy) -> Result<bool, RepoError>;
}

pub struct PolicyService {
    repo: Arc<dyn PolicyRepository>,
    defaults: BookingPolicy,
}

impl PolicyService {
    pub fn new(repo: Arc<dyn PolicyRepository>, defaults: BookingPolicy) -> Self {
        Self { repo, defaults }
    }

    /// The service's defaults, which unset values fall back to.
    pub fn defaults(&self) -> BookingPolicy {
        self.defaults
    }

    /// The clinic's own rules and what they come to.
    pub async fn clinic(
        &self,
        id: ClinicId,
    ) -> Result<(ClinicPolicy, BookingPolicy), ServiceError> {
        let own = self
            .repo
            .clinic(id)
            .await?
            .ok_or(ServiceError::NotFound("clinic"))?;
        Ok((
            own,
            self.defaults.for_practice(&own, &DoctorPolicy::default()),
        ))
    }

    pub async fn set_clinic(
        &self,
        id: ClinicId,
        policy: ClinicPolicy,
    ) -> Result<(ClinicPolicy, BookingPolicy), ServiceError> {
        let policy = policy.validate()?;
        if !self.repo.set_clinic(id, policy).await? {
            return Err(ServiceError::NotFound("clinic"));
        }
        self.clinic(id).await
    }

    /// The doctor's overrides and what their practice's rules come to.
    pub async fn doctor(
        &self,
        id: DoctorId,
    ) -> Result<(DoctorPolicy, BookingPolicy), ServiceError> {
        let (own, clinic) = self
            .repo
            .doctor(id)
            .await?
            .ok_or(ServiceError::NotFound("doctor"))?;
        Ok((own, self.defaults.for_practice(&clinic, &own)))
    }

    pub async fn set_doctor(
        &self,
        id: DoctorId,
        policy: DoctorPolicy,
    ) -> Result<(DoctorPolicy, BookingPolicy), ServiceError> {
        let policy = policy.validate()?;
        if !self.repo.set_doctor(id, policy).await? {
            return Err(ServiceError::NotFound("doctor"));
        }
        self.doctor(id).await
    }
}
