//! Admin slot management (single, bulk from a weekly template, block/unblock, delete)
//! and the public slot listing.

use super::booking_ports::{GenerationReport, SlotChange, SlotFilter, SlotRepository};
use super::catalog::CatalogService;
use super::ports::RepoError;
use super::ServiceError;
use crate::domain::booking::Slot;
use crate::domain::rejection::Rejection;
use crate::domain::schedule::{self, SlotRange, WeeklyTemplate};
use crate::domain::{DoctorId, SlotId};
use std::sync::Arc;
use uuid::Uuid;

pub struct SlotService {
    slots: Arc<dyn SlotRepository>,
    /// Doctors are read through the catalog, so its cache serves these checks too.
    catalog: Arc<CatalogService>,
}

fn overlap(e: RepoError) -> ServiceError {
    match e {
        RepoError::ExclusionViolation(_) => Rejection::SlotOverlap.into(),
        RepoError::ForeignKeyViolation(_) => ServiceError::NotFound("doctor"),
        other => other.into(),
    }
}

impl SlotService {
    pub fn new(slots: Arc<dyn SlotRepository>, catalog: Arc<CatalogService>) -> Self {
        Self { slots, catalog }
    }

    #[tracing::instrument(skip_all, fields(doctor_id = %doctor_id))]
    pub async fn create(
        &self,
        doctor_id: DoctorId,
        range: SlotRange,
    ) -> Result<Slot, ServiceError> {
        self.slots
            .create(SlotId(Uuid::new_v4()), doctor_id, range)
            .await
            .map_err(overlap)
    }

    /// Generates slots from a weekly template in the doctor's clinic time zone.
    /// Re-running the same template creates nothing new.
    #[tracing::instrument(skip_all, fields(doctor_id = %doctor_id))]
    pub async fn generate(
        &self,
        doctor_id: DoctorId,
        template: WeeklyTemplate,
    ) -> Result<GenerationReport, ServiceError> {
        let doctor = self.catalog.doctor(doctor_id).await?;
        let tz = schedule::parse_time_zone(&doctor.clinic.time_zone)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("clinic time zone: {e}")))?;
        let ranges = schedule::generate(&template, tz);
        self.slots
            .insert_generated(doctor_id, ranges)
            .await
            .map_err(overlap)
    }

    #[tracing::instrument(skip_all, fields(slot_id = %id))]
    pub async fn set_blocked(&self, id: SlotId, blocked: bool) -> Result<Slot, ServiceError> {
        match self.slots.set_blocked(id, blocked).await? {
            SlotChange::Done(Some(slot)) => Ok(slot),
            SlotChange::Done(None) | SlotChange::NotFound => Err(ServiceError::NotFound("slot")),
            SlotChange::Booked => Err(Rejection::SlotBooked.into()),
        }
    }

    #[tracing::instrument(skip_all, fields(slot_id = %id))]
    pub async fn delete(&self, id: SlotId) -> Result<(), ServiceError> {
        match self.slots.delete_unbooked(id).await? {
            SlotChange::Done(_) => Ok(()),
            SlotChange::NotFound => Err(ServiceError::NotFound("slot")),
            SlotChange::Booked => Err(Rejection::SlotHasHistory.into()),
        }
    }

    pub async fn list(&self, filter: SlotFilter) -> Result<Vec<Slot>, ServiceError> {
        self.catalog.doctor(filter.doctor_id).await?;
        Ok(self.slots.list(filter).await?)
    }
}
