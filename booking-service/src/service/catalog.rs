//! Clinics and doctors: admin management and public reads. The doctor detail is read
//! through the cache (cache-aside); every write that changes what it shows — the doctor,
//! its clinic, a new review — invalidates it.

use super::booking_ports::{ClinicRepository, DoctorQuery, DoctorRemoval, DoctorRepository};
use super::cache_ports::{doctor_cache_key, get_or_load, Cache};
use super::ports::{Clock, Page, PageRequest};
use super::ServiceError;
use crate::domain::booking::{Clinic, ClinicInput, Doctor, DoctorInput};
use crate::domain::rejection::Rejection;
use crate::domain::{ClinicId, DoctorId, UserId};
use std::sync::Arc;
use uuid::Uuid;

pub struct CatalogService {
    clinics: Arc<dyn ClinicRepository>,
    doctors: Arc<dyn DoctorRepository>,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
}

impl CatalogService {
    pub fn new(
        clinics: Arc<dyn ClinicRepository>,
        doctors: Arc<dyn DoctorRepository>,
        cache: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            clinics,
            doctors,
            cache,
            clock,
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_clinic(&self, input: ClinicInput) -> Result<Clinic, ServiceError> {
        Ok(self.clinics.create(ClinicId(Uuid::new_v4()), input).await?)
    }

    #[tracing::instrument(skip_all, fields(clinic_id = %id))]
    pub async fn update_clinic(
        &self,
        id: ClinicId,
        input: ClinicInput,
    ) -> Result<Clinic, ServiceError> {
        let clinic = self
            .clinics
            .update(id, input)
            .await?
            .ok_or(ServiceError::NotFound("clinic"))?;
        for doctor in self.clinics.doctor_ids(id).await? {
            self.cache.invalidate(&doctor_cache_key(doctor)).await;
        }
        Ok(clinic)
    }

    #[tracing::instrument(skip_all, fields(clinic_id = %id))]
    pub async fn delete_clinic(&self, id: ClinicId) -> Result<(), ServiceError> {
        match self.clinics.delete(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ServiceError::NotFound("clinic")),
            Err(super::ports::RepoError::ForeignKeyViolation(_)) => {
                Err(Rejection::ClinicInUse.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn clinic(&self, id: ClinicId) -> Result<Clinic, ServiceError> {
        self.clinics
            .get(id)
            .await?
            .ok_or(ServiceError::NotFound("clinic"))
    }

    pub async fn clinics(
        &self,
        city: Option<String>,
        page: PageRequest,
    ) -> Result<Page<Clinic>, ServiceError> {
        Ok(self.clinics.list(city, page).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_doctor(&self, input: DoctorInput) -> Result<Doctor, ServiceError> {
        self.doctors
            .create(DoctorId(Uuid::new_v4()), input)
            .await
            .map_err(doctor_refs)
    }

    #[tracing::instrument(skip_all, fields(doctor_id = %id))]
    pub async fn update_doctor(
        &self,
        id: DoctorId,
        input: DoctorInput,
    ) -> Result<Doctor, ServiceError> {
        let doctor = self
            .doctors
            .update(id, input)
            .await
            .map_err(doctor_refs)?
            .ok_or(ServiceError::NotFound("doctor"))?;
        self.cache.invalidate(&doctor_cache_key(id)).await;
        Ok(doctor)
    }

    /// Deletes a doctor without history; one with appointments is deactivated instead.
    #[tracing::instrument(skip_all, fields(doctor_id = %id))]
    pub async fn remove_doctor(&self, id: DoctorId) -> Result<DoctorRemoval, ServiceError> {
        let outcome = self.doctors.remove(id).await?;
        self.cache.invalidate(&doctor_cache_key(id)).await;
        match outcome {
            DoctorRemoval::NotFound => Err(ServiceError::NotFound("doctor")),
            other => Ok(other),
        }
    }

    /// The doctor linked to a user account, if any.
    pub async fn doctor_of_user(&self, user_id: UserId) -> Result<Option<Doctor>, ServiceError> {
        Ok(self.doctors.by_user(user_id).await?)
    }

    /// One doctor with clinic and rating summary, through the cache.
    #[tracing::instrument(skip_all, fields(doctor_id = %id))]
    pub async fn doctor(&self, id: DoctorId) -> Result<Doctor, ServiceError> {
        let doctors = self.doctors.clone();
        let found: Option<Doctor> =
            get_or_load(self.cache.as_ref(), &doctor_cache_key(id), || async move {
                doctors.get(id).await
            })
            .await?;
        found.ok_or(ServiceError::NotFound("doctor"))
    }

    #[tracing::instrument(skip_all)]
    pub async fn search(&self, query: DoctorQuery) -> Result<Page<Doctor>, ServiceError> {
        Ok(self.doctors.search(query, self.clock.now()).await?)
    }
}

/// A doctor pointing at a clinic or user that does not exist, or a user already linked.
fn doctor_refs(e: super::ports::RepoError) -> ServiceError {
    use super::ports::RepoError;
    match e {
        RepoError::ForeignKeyViolation(c) => {
            ServiceError::Validation(crate::domain::ValidationErrors(vec![
                crate::domain::FieldError::new(
                    if c.contains("user") {
                        "user_id"
                    } else {
                        "clinic_id"
                    },
                    "does not exist",
                ),
            ]))
        }
        RepoError::UniqueViolation(_) => Rejection::UserAlreadyLinked.into(),
        other => other.into(),
    }
}
