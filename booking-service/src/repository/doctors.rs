//! `DoctorRepository`: doctors with their clinic and rating totals, and the search.

use super::audit;
use super::clinics::ClinicRow;
use super::db::{map_err, Db};
use super::schema::{appointments, clinics, doctors};
use super::users::like_pattern;
use crate::domain::audit::{json, AuditEntry};
use crate::domain::booking::{Clinic, Doctor, DoctorInput, DoctorStatus, RatingSummary};
use crate::domain::DoctorId;
use crate::domain::UserId;
use crate::service::booking_ports::{DoctorQuery, DoctorRemoval, DoctorRepository, DoctorSort};
use crate::service::ports::{Page, RepoError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Date, Timestamptz};
use uuid::Uuid;

#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = doctors)]
struct DoctorRow {
    id: Uuid,
    full_name: String,
    specialty: String,
    status: String,
    bio: String,
    years_of_experience: i32,
    user_id: Option<Uuid>,
    rating_sum: i64,
    rating_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn to_doctor((d, c): (DoctorRow, ClinicRow)) -> Result<Doctor, RepoError> {
    Ok(Doctor {
        id: DoctorId(d.id),
        full_name: d.full_name,
        specialty: d.specialty,
        clinic: Clinic::from(c),
        status: d
            .status
            .parse::<DoctorStatus>()
            .map_err(|e| RepoError::Internal(anyhow::anyhow!(e)))?,
        bio: d.bio,
        years_of_experience: d.years_of_experience,
        user_id: d.user_id.map(UserId),
        rating: RatingSummary::from_totals(d.rating_sum, i64::from(d.rating_count)),
        created_at: d.created_at,
        updated_at: d.updated_at,
    })
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = doctors, treat_none_as_null = true)]
struct DoctorForm {
    full_name: String,
    specialty: String,
    clinic_id: Uuid,
    status: &'static str,
    bio: String,
    years_of_experience: i32,
    user_id: Option<Uuid>,
}

impl From<DoctorInput> for DoctorForm {
    fn from(i: DoctorInput) -> Self {
        Self {
            full_name: i.full_name,
            specialty: i.specialty,
            clinic_id: i.clinic_id.into(),
            status: i.status.as_str(),
            bio: i.bio,
            years_of_experience: i.years_of_experience,
            user_id: i.user_id.map(|u| u.0),
        }
    }
}

fn load_one(conn: &mut PgConnection, id: Uuid) -> Result<Option<Doctor>, RepoError> {
    doctors::table
        .inner_join(clinics::table)
        .filter(doctors::id.eq(id))
        .select((DoctorRow::as_select(), ClinicRow::as_select()))
        .first(conn)
        .optional()
        .map_err(map_err)?
        .map(to_doctor)
        .transpose()
}

/// What the audit log records of a doctor (a doctor's name is public, not personal data
/// of a patient).
fn audited(d: &Doctor) -> serde_json::Value {
    serde_json::json!({
        "name": d.full_name,
        "specialty": d.specialty,
        "clinic_id": d.clinic.id,
        "status": d.status.as_str(),
        "bio": d.bio,
        "years_of_experience": d.years_of_experience,
        "user_id": d.user_id,
    })
}

/// The doctor, its row locked for the rest of the transaction.
fn locked(conn: &mut PgConnection, id: DoctorId) -> Result<Option<Doctor>, RepoError> {
    let exists: Option<Uuid> = doctors::table
        .find(id)
        .select(doctors::id)
        .for_update()
        .first(conn)
        .optional()
        .map_err(map_err)?;
    match exists {
        Some(id) => load_one(conn, id),
        None => Ok(None),
    }
}

pub struct PgDoctors {
    db: Db,
}

impl PgDoctors {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl DoctorRepository for PgDoctors {
    async fn create(&self, id: DoctorId, input: DoctorInput) -> Result<Doctor, RepoError> {
        let form = DoctorForm::from(input);
        self.db
            .transaction(move |conn| {
                diesel::insert_into(doctors::table)
                    .values((doctors::id.eq(id), &form))
                    .execute(conn)
                    .map_err(map_err)?;
                let doctor = load_one(conn, id.into())?
                    .ok_or_else(|| RepoError::Internal(anyhow::anyhow!("doctor vanished")))?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("doctor.created", "doctor", id).created(&audited(&doctor)),
                )?;
                Ok(doctor)
            })
            .await
    }

    async fn update(&self, id: DoctorId, input: DoctorInput) -> Result<Option<Doctor>, RepoError> {
        let form = DoctorForm::from(input);
        self.db
            .transaction(move |conn| {
                let Some(before) = locked(conn, id)? else {
                    return Ok(None);
                };
                diesel::update(doctors::table.find(id))
                    .set((&form, doctors::updated_at.eq(Utc::now())))
                    .execute(conn)
                    .map_err(map_err)?;
                let after = load_one(conn, id.into())?
                    .ok_or_else(|| RepoError::Internal(anyhow::anyhow!("doctor vanished")))?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("doctor.updated", "doctor", id)
                        .diff(&audited(&before), &audited(&after)),
                )?;
                Ok(Some(after))
            })
            .await
    }

    async fn remove(&self, id: DoctorId) -> Result<DoctorRemoval, RepoError> {
        self.db
            .transaction(move |conn| {
                let Some(before) = locked(conn, id)? else {
                    return Ok(DoctorRemoval::NotFound);
                };
                let has_history: bool = diesel::select(diesel::dsl::exists(
                    appointments::table.filter(appointments::doctor_id.eq(id)),
                ))
                .get_result(conn)
                .map_err(map_err)?;
                if has_history {
                    diesel::update(doctors::table.find(id))
                        .set((
                            doctors::status.eq(DoctorStatus::Inactive.as_str()),
                            doctors::updated_at.eq(Utc::now()),
                        ))
                        .execute(conn)
                        .map_err(map_err)?;
                    audit::enqueue(
                        conn,
                        AuditEntry::new("doctor.deactivated", "doctor", id).field(
                            "status",
                            json(&before.status.as_str()),
                            json(&DoctorStatus::Inactive.as_str()),
                        ),
                    )?;
                    Ok(DoctorRemoval::Deactivated)
                } else {
                    diesel::delete(doctors::table.find(id))
                        .execute(conn)
                        .map_err(map_err)?;
                    audit::enqueue(
                        conn,
                        AuditEntry::new("doctor.deleted", "doctor", id).deleted(&audited(&before)),
                    )?;
                    Ok(DoctorRemoval::Deleted)
                }
            })
            .await
    }

    async fn get(&self, id: DoctorId) -> Result<Option<Doctor>, RepoError> {
        self.db.run(move |conn| load_one(conn, id.into())).await
    }

    async fn by_user(&self, user_id: UserId) -> Result<Option<Doctor>, RepoError> {
        self.db
            .run(move |conn| {
                let id: Option<Uuid> = doctors::table
                    .filter(doctors::user_id.eq(user_id.0))
                    .select(doctors::id)
                    .first(conn)
                    .optional()
                    .map_err(map_err)?;
                match id {
                    Some(id) => load_one(conn, id),
                    None => Ok(None),
                }
            })
            .await
    }

    async fn search(&self, q: DoctorQuery, now: DateTime<Utc>) -> Result<Page<Doctor>, RepoError> {
        self.db
            .run(move |conn| {
                let filtered = || {
                    let mut query = doctors::table.inner_join(clinics::table).into_boxed();
                    if let Some(name) = &q.name {
                        // ILIKE with a gin_trgm_ops index on full_name.
                        query = query.filter(doctors::full_name.ilike(like_pattern(name)));
                    }
                    if let Some(s) = &q.specialty {
                        query = query.filter(
                            diesel::dsl::sql::<Bool>("lower(doctors.specialty) = lower(")
                                .bind::<diesel::sql_types::Text, _>(s.clone())
                                .sql(")"),
                        );
                    }
                    if let Some(status) = q.status {
                        query = query.filter(doctors::status.eq(status.as_str()));
                    }
                    if let Some(city) = &q.city {
                        query = query.filter(
                            diesel::dsl::sql::<Bool>("lower(clinics.city) = lower(")
                                .bind::<diesel::sql_types::Text, _>(city.clone())
                                .sql(")"),
                        );
                    }
                    if let Some(clinic) = q.clinic_id {
                        query = query.filter(doctors::clinic_id.eq(clinic));
                    }
                    if let Some(day) = q.available_on {
                        // The day's bounds in the clinic's own time zone.
                        query = query.filter(
                            sql::<Bool>(
                                "EXISTS (SELECT 1 FROM slots s WHERE s.doctor_id = doctors.id \
                                 AND s.status = 'available' AND s.starts_at > ",
                            )
                            .bind::<Timestamptz, _>(now)
                            .sql(" AND s.starts_at >= (")
                            .bind::<Date, _>(day)
                            .sql("::timestamp AT TIME ZONE clinics.time_zone) AND s.starts_at < ((")
                            .bind::<Date, _>(day)
                            .sql(" + 1)::timestamp AT TIME ZONE clinics.time_zone))"),
                        );
                    }
                    query
                };
                let total: i64 = filtered().count().get_result(conn).map_err(map_err)?;
                let ordered = match q.sort {
                    DoctorSort::Name => {
                        filtered().order((doctors::full_name.asc(), doctors::id.asc()))
                    }
                    DoctorSort::Rating => filtered().order((
                        sql::<diesel::sql_types::Double>(
                            "CASE WHEN doctors.rating_count = 0 THEN 0 \
                             ELSE doctors.rating_sum::float8 / doctors.rating_count END DESC",
                        ),
                        doctors::rating_count.desc(),
                        doctors::full_name.asc(),
                        doctors::id.asc(),
                    )),
                };
                let rows = ordered
                    .limit(i64::from(q.page.per_page))
                    .offset(q.page.offset())
                    .select((DoctorRow::as_select(), ClinicRow::as_select()))
                    .load::<(DoctorRow, ClinicRow)>(conn)
                    .map_err(map_err)?;
                Ok(Page {
                    items: rows.into_iter().map(to_doctor).collect::<Result<_, _>>()?,
                    total,
                    page: q.page.page,
                    per_page: q.page.per_page,
                })
            })
            .await
    }
}
