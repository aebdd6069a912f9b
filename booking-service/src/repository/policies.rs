//! `PolicyRepository` over PostgreSQL: the policy columns of `clinics` and `doctors`.

use super::audit::AuditRecord;
use super::db::{map_err, Db};
use super::schema::{clinics, doctors};
use crate::domain::audit::{json, AuditEntry};
use crate::domain::booking::{ClinicPolicy, DoctorPolicy};
use crate::domain::{ClinicId, DoctorId};
use crate::service::policies::PolicyRepository;
use crate::service::ports::RepoError;
use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;

type ClinicColumns = (
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    bool,
);

fn clinic_policy(c: ClinicColumns) -> ClinicPolicy {
    ClinicPolicy {
        min_notice_minutes: c.0,
        horizon_days: c.1,
        change_deadline_minutes: c.2,
        max_active_per_patient: c.3,
        no_show_limit: c.4,
        no_show_window_days: c.5,
        no_show_email: c.6,
    }
}

macro_rules! clinic_columns {
    () => {
        (
            clinics::min_notice_minutes,
            clinics::horizon_days,
            clinics::change_deadline_minutes,
            clinics::max_active_per_patient,
            clinics::no_show_limit,
            clinics::no_show_window_days,
            clinics::no_show_email,
        )
    };
}

fn load_clinic(conn: &mut PgConnection, id: ClinicId) -> Result<Option<ClinicPolicy>, RepoError> {
    Ok(clinics::table
        .find(id.0)
        .select(clinic_columns!())
        .first::<ClinicColumns>(conn)
        .optional()
        .map_err(map_err)?
        .map(clinic_policy))
}

fn load_doctor(
    conn: &mut PgConnection,
    id: DoctorId,
) -> Result<Option<(DoctorPolicy, ClinicPolicy)>, RepoError> {
    Ok(doctors::table
        .inner_join(clinics::table)
        .filter(doctors::id.eq(id.0))
        .select((
            (
                doctors::min_notice_minutes,
                doctors::horizon_days,
                doctors::change_deadline_minutes,
            ),
            clinic_columns!(),
        ))
        .first::<((Option<i32>, Option<i32>, Option<i32>), ClinicColumns)>(conn)
        .optional()
        .map_err(map_err)?
        .map(|(d, c)| {
            (
                DoctorPolicy {
                    min_notice_minutes: d.0,
                    horizon_days: d.1,
                    change_deadline_minutes: d.2,
                },
                clinic_policy(c),
            )
        }))
}

fn audited(
    conn: &mut PgConnection,
    entity: &'static str,
    id: uuid::Uuid,
    before: serde_json::Value,
    after: serde_json::Value,
) -> Result<(), RepoError> {
    AuditRecord::from_entry(
        AuditEntry::new("policy.updated", entity, id).field("policy", Some(before), Some(after)),
        Utc::now(),
    )
    .row()?
    .insert(conn)
}

pub struct PgPolicies {
    db: Db,
}

impl PgPolicies {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl PolicyRepository for PgPolicies {
    async fn clinic(&self, id: ClinicId) -> Result<Option<ClinicPolicy>, RepoError> {
        self.db.run(move |conn| load_clinic(conn, id)).await
    }

    async fn set_clinic(&self, id: ClinicId, p: ClinicPolicy) -> Result<bool, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some(before) = load_clinic(conn, id)? else {
                    return Ok(false);
                };
                diesel::update(clinics::table.find(id.0))
                    .set((
                        clinics::min_notice_minutes.eq(p.min_notice_minutes),
                        clinics::horizon_days.eq(p.horizon_days),
                        clinics::change_deadline_minutes.eq(p.change_deadline_minutes),
                        clinics::max_active_per_patient.eq(p.max_active_per_patient),
                        clinics::no_show_limit.eq(p.no_show_limit),
                        clinics::no_show_window_days.eq(p.no_show_window_days),
                        clinics::no_show_email.eq(p.no_show_email),
                        clinics::updated_at.eq(Utc::now()),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
                audited(
                    conn,
                    "clinic",
                    id.0,
                    json(&before).unwrap_or_default(),
                    json(&p).unwrap_or_default(),
                )?;
                Ok(true)
            })
            .await
    }

    async fn doctor(
        &self,
        id: DoctorId,
    ) -> Result<Option<(DoctorPolicy, ClinicPolicy)>, RepoError> {
        self.db.run(move |conn| load_doctor(conn, id)).await
    }

    async fn set_doctor(&self, id: DoctorId, p: DoctorPolicy) -> Result<bool, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some((before, _)) = load_doctor(conn, id)? else {
                    return Ok(false);
                };
                diesel::update(doctors::table.find(id.0))
                    .set((
                        doctors::min_notice_minutes.eq(p.min_notice_minutes),
                        doctors::horizon_days.eq(p.horizon_days),
                        doctors::change_deadline_minutes.eq(p.change_deadline_minutes),
                        doctors::updated_at.eq(Utc::now()),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
                audited(
                    conn,
                    "doctor",
                    id.0,
                    json(&before).unwrap_or_default(),
                    json(&p).unwrap_or_default(),
                )?;
                Ok(true)
            })
            .await
    }
}
