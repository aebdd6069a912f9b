//! `ClinicRepository` over the `clinics` table.

use super::audit;
use super::db::{map_err, Db};
use super::schema::{clinics, doctors};
use super::users::like_pattern;
use crate::domain::audit::AuditEntry;
use crate::domain::booking::{Clinic, ClinicInput};
use crate::domain::ClinicId;
use crate::domain::DoctorId;
use crate::service::booking_ports::ClinicRepository;
use crate::service::ports::{Page, PageRequest, RepoError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = clinics)]
pub(crate) struct ClinicRow {
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub address: String,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ClinicRow> for Clinic {
    fn from(r: ClinicRow) -> Self {
        Clinic {
            id: ClinicId(r.id),
            name: r.name,
            city: r.city,
            address: r.address,
            time_zone: r.time_zone,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = clinics)]
struct ClinicForm {
    name: String,
    city: String,
    address: String,
    time_zone: String,
}

impl From<ClinicInput> for ClinicForm {
    fn from(i: ClinicInput) -> Self {
        Self {
            name: i.name,
            city: i.city,
            address: i.address,
            time_zone: i.time_zone.name().to_owned(),
        }
    }
}

/// The clinic's row, locked for the rest of the transaction.
fn locked(conn: &mut PgConnection, id: ClinicId) -> Result<Option<ClinicRow>, RepoError> {
    clinics::table
        .find(id)
        .select(ClinicRow::as_select())
        .for_update()
        .first(conn)
        .optional()
        .map_err(map_err)
}

pub struct PgClinics {
    db: Db,
}

impl PgClinics {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

/// What the audit log records of a clinic.
fn audited(c: &ClinicRow) -> serde_json::Value {
    serde_json::json!({
        "name": c.name,
        "city": c.city,
        "address": c.address,
        "time_zone": c.time_zone,
    })
}

#[async_trait]
impl ClinicRepository for PgClinics {
    async fn create(&self, id: ClinicId, input: ClinicInput) -> Result<Clinic, RepoError> {
        let form = ClinicForm::from(input);
        self.db
            .transaction(move |conn| {
                let row = diesel::insert_into(clinics::table)
                    .values((clinics::id.eq(id), &form))
                    .returning(ClinicRow::as_returning())
                    .get_result(conn)
                    .map_err(map_err)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("clinic.created", "clinic", id).created(&audited(&row)),
                )?;
                Ok(Clinic::from(row))
            })
            .await
    }

    async fn update(&self, id: ClinicId, input: ClinicInput) -> Result<Option<Clinic>, RepoError> {
        let form = ClinicForm::from(input);
        self.db
            .transaction(move |conn| {
                let Some(before) = locked(conn, id)? else {
                    return Ok(None);
                };
                let row = diesel::update(clinics::table.find(id))
                    .set((&form, clinics::updated_at.eq(Utc::now())))
                    .returning(ClinicRow::as_returning())
                    .get_result(conn)
                    .map_err(map_err)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("clinic.updated", "clinic", id)
                        .diff(&audited(&before), &audited(&row)),
                )?;
                Ok(Some(Clinic::from(row)))
            })
            .await
    }

    async fn delete(&self, id: ClinicId) -> Result<bool, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some(before) = locked(conn, id)? else {
                    return Ok(false);
                };
                diesel::delete(clinics::table.find(id))
                    .execute(conn)
                    .map_err(map_err)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("clinic.deleted", "clinic", id).deleted(&audited(&before)),
                )?;
                Ok(true)
            })
            .await
    }

    async fn get(&self, id: ClinicId) -> Result<Option<Clinic>, RepoError> {
        self.db
            .run(move |conn| {
                clinics::table
                    .find(id)
                    .select(ClinicRow::as_select())
                    .first(conn)
                    .optional()
                    .map(|r| r.map(Clinic::from))
                    .map_err(map_err)
            })
            .await
    }

    async fn list(
        &self,
        city: Option<String>,
        page: PageRequest,
    ) -> Result<Page<Clinic>, RepoError> {
        self.db
            .run(move |conn| {
                let filtered = || {
                    let mut q = clinics::table.into_boxed();
                    if let Some(c) = &city {
                        q = q.filter(clinics::city.ilike(like_pattern(c)));
                    }
                    q
                };
                let total = filtered().count().get_result(conn).map_err(map_err)?;
                let items = filtered()
                    .order((clinics::name.asc(), clinics::id.asc()))
                    .limit(i64::from(page.per_page))
                    .offset(page.offset())
                    .select(ClinicRow::as_select())
                    .load(conn)
                    .map_err(map_err)?;
                Ok(Page {
                    items: items.into_iter().map(Clinic::from).collect(),
                    total,
                    page: page.page,
                    per_page: page.per_page,
                })
            })
            .await
    }

    async fn doctor_ids(&self, clinic_id: ClinicId) -> Result<Vec<DoctorId>, RepoError> {
        self.db
            .run(move |conn| {
                doctors::table
                    .filter(doctors::clinic_id.eq(clinic_id))
                    .select(doctors::id)
                    .load::<uuid::Uuid>(conn)
                    .map(|ids| ids.into_iter().map(DoctorId).collect())
                    .map_err(map_err)
            })
            .await
    }
}
