//! `UserRepository` over the `users` table.

use super::audit;
use super::db::{map_err, Db};
use super::schema::{doctors, users};
use crate::domain::audit::{json, AuditEntry};
use crate::domain::{DoctorId, Email, Gender, NewUser, Role, User, UserId};
use crate::service::ports::{
    DoctorAccountRefusal, Page, PageRequest, RepoError, UserChanges, UserRepository,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use uuid::Uuid;

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    id: Uuid,
    email: String,
    password_hash: Option<String>,
    role: String,
    full_name: String,
    birth_date: Option<NaiveDate>,
    gender: Option<String>,
    phone: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    email_verified_at: Option<DateTime<Utc>>,
    pending_email: Option<String>,
}

impl TryFrom<UserRow> for User {
    type Error = RepoError;
    fn try_from(r: UserRow) -> Result<Self, RepoError> {
        Ok(User {
            id: UserId(r.id),
            email: r.email,
            password_hash: r.password_hash,
            role: r
                .role
                .parse()
                .map_err(|e: String| RepoError::Internal(anyhow::anyhow!(e)))?,
            full_name: r.full_name,
            birth_date: r.birth_date,
            gender: r
                .gender
                .map(|g| g.parse::<Gender>())
                .transpose()
                .map_err(|e| RepoError::Internal(anyhow::anyhow!(e)))?,
            phone: r.phone,
            created_at: r.created_at,
            updated_at: r.updated_at,
            email_verified_at: r.email_verified_at,
            pending_email: r.pending_email,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub(crate) struct NewUserRow {
    id: Uuid,
    email: String,
    password_hash: Option<String>,
    role: &'static str,
    full_name: String,
    birth_date: Option<NaiveDate>,
    gender: Option<&'static str>,
    phone: Option<String>,
    email_verified_at: Option<DateTime<Utc>>,
}

impl From<NewUser> for NewUserRow {
    fn from(u: NewUser) -> Self {
        Self {
            id: u.id.0,
            email: u.email.as_str().to_owned(),
            password_hash: u.password_hash,
            role: u.role.as_str(),
            full_name: u.full_name.as_str().to_owned(),
            birth_date: u.birth_date.map(|d| d.get()),
            gender: u.gender.map(Gender::as_str),
            phone: u.phone.map(|p| p.as_str().to_owned()),
            email_verified_at: u.email_verified_at,
        }
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChangeset {
    email: Option<String>,
    password_hash: Option<String>,
    full_name: Option<String>,
    birth_date: Option<Option<NaiveDate>>,
    gender: Option<Option<&'static str>>,
    phone: Option<Option<String>>,
    email_verified_at: Option<Option<DateTime<Utc>>>,
    pending_email: Option<Option<String>>,
    updated_at: DateTime<Utc>,
}

fn rows_to_users(rows: Vec<UserRow>) -> Result<Vec<User>, RepoError> {
    rows.into_iter().map(User::try_from).collect()
}

/// Escapes `%`, `_` and `\` so user input is matched literally by ILIKE.
pub(crate) fn like_pattern(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// What the audit log records of a user: its role and shape, the personal fields only
/// as "changed" (see `domain::audit`).
fn audited(u: &User) -> serde_json::Value {
    serde_json::json!({
        "role": u.role.as_str(),
        "email": u.email,
        "full_name": u.full_name,
        "birth_date": u.birth_date,
        "gender": u.gender.map(Gender::as_str),
        "phone": u.phone,
        "email_verified": u.email_verified(),
        "pending_email": u.pending_email,
    })
}

/// Inserts one user row in the caller's transaction.
pub(super) fn insert_row(conn: &mut PgConnection, row: &NewUserRow) -> Result<User, RepoError> {
    diesel::insert_into(users::table)
        .values(row)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .map_err(map_err)
        .and_then(User::try_from)
}

pub struct PgUsers {
    db: Db,
}

impl PgUsers {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl UserRepository for PgUsers {
    async fn insert(&self, user: NewUser) -> Result<User, RepoError> {
        let row = NewUserRow::from(user);
        self.db
            .transaction(move |conn| {
                let user = insert_row(conn, &row)?;
                let action = match user.role {
                    Role::Patient => "patient.created",
                    Role::Admin => "admin.created",
                    Role::Doctor => "doctor_account.created",
                };
                audit::enqueue(
                    conn,
                    AuditEntry::new(action, "user", user.id).created(&audited(&user)),
                )?;
                Ok(user)
            })
            .await
    }

    async fn insert_doctor_account(
        &self,
        user: NewUser,
        doctor: DoctorId,
    ) -> Result<Result<User, DoctorAccountRefusal>, RepoError> {
        let row = NewUserRow::from(user);
        self.db
            .transaction(move |conn| {
                let linked: Option<Option<Uuid>> = doctors::table
                    .find(doctor.0)
                    .select(doctors::user_id)
                    .for_update()
                    .first(conn)
                    .optional()
                    .map_err(map_err)?;
                match linked {
                    None => return Ok(Err(DoctorAccountRefusal::NoSuchDoctor)),
                    Some(Some(_)) => return Ok(Err(DoctorAccountRefusal::AlreadyLinked)),
                    Some(None) => {}
                }
                let user = insert_row(conn, &row)?;
                diesel::update(doctors::table.find(doctor.0))
                    .set((
                        doctors::user_id.eq(user.id.0),
                        doctors::updated_at.eq(Utc::now()),
                    ))
                    .execute(conn)
                    .map_err(map_err)?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("doctor_account.created", "user", user.id)
                        .created(&audited(&user)),
                )?;
                audit::enqueue(
                    conn,
                    AuditEntry::new("doctor.updated", "doctor", doctor).field(
                        "user_id",
                        json(&None::<Uuid>),
                        json(&Some(user.id.0)),
                    ),
                )?;
                Ok(Ok(user))
            })
            .await
    }

    async fn insert_all(&self, new_users: Vec<NewUser>) -> Result<Vec<User>, RepoError> {
        let rows: Vec<NewUserRow> = new_users.into_iter().map(NewUserRow::from).collect();
        self.db
            .transaction(move |conn| {
                let mut out = Vec::with_capacity(rows.len());
                // Chunks keep each statement well under PostgreSQL's bind limit.
                for chunk in rows.chunks(1000) {
                    let inserted = diesel::insert_into(users::table)
                        .values(chunk)
                        .returning(UserRow::as_returning())
                        .get_results(conn)
                        .map_err(map_err)?;
                    out.extend(inserted);
                }
                let users = rows_to_users(out)?;
                // One record for the import: its size and the ids it created.
                let ids: Vec<String> = users.iter().map(|u| u.id.to_string()).collect();
                audit::enqueue(
                    conn,
                    AuditEntry::new("patients.imported", "import", uuid::Uuid::new_v4())
                        .field("count", None, json(&ids.len()))
                        .field("user_ids", None, json(&ids)),
                )?;
                Ok(users)
            })
            .await
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepoError> {
        self.db
            .run(move |conn| {
                users::table
                    .find(id.0)
                    .select(UserRow::as_select())
                    .first(conn)
                    .optional()
                    .map_err(map_err)?
                    .map(User::try_from)
                    .transpose()
            })
            .await
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepoError> {
        let email = email.as_str().to_owned();
        self.db
            .run(move |conn| {
                users::table
                    .filter(users::email.eq(email))
                    .select(UserRow::as_select())
                    .first(conn)
                    .optional()
                    .map_err(map_err)?
                    .map(User::try_from)
                    .transpose()
            })
            .await
    }

    async fn existing_emails(&self, emails: Vec<String>) -> Result<Vec<String>, RepoError> {
        self.db
            .run(move |conn| {
                let mut found = Vec::new();
                for chunk in emails.chunks(10_000) {
                    let mut part: Vec<String> = users::table
                        .filter(users::email.eq_any(chunk))
                        .select(users::email)
                        .load(conn)
                        .map_err(map_err)?;
                    found.append(&mut part);
                }
                Ok(found)
            })
            .await
    }

    async fn update(&self, id: UserId, c: UserChanges) -> Result<Option<User>, RepoError> {
        // The parsed values, as the columns hold them.
        let changes = UserChangeset {
            email: c.email.map(|e| e.as_str().to_owned()),
            password_hash: c.password_hash,
            full_name: c.full_name.map(|n| n.as_str().to_owned()),
            birth_date: c.birth_date.map(|d| d.map(|d| d.get())),
            gender: c.gender.map(|g| g.map(Gender::as_str)),
            phone: c.phone.map(|p| p.map(|p| p.as_str().to_owned())),
            email_verified_at: c.email_verified_at,
            pending_email: c.pending_email.map(|e| e.map(|e| e.as_str().to_owned())),
            updated_at: Utc::now(),
        };
        self.db
            .transaction(move |conn| {
                let Some(before) = users::table
                    .find(id.0)
                    .select(UserRow::as_select())
                    .for_update()
                    .first(conn)
                    .optional()
                    .map_err(map_err)?
                    .map(User::try_from)
                    .transpose()?
                else {
                    return Ok(None);
                };
                let after = diesel::update(users::table.find(id.0))
                    .set(&changes)
                    .returning(UserRow::as_returning())
                    .get_result(conn)
                    .map_err(map_err)
                    .and_then(User::try_from)?;
                let password_changed = changes.password_hash.is_some();
                let entry = if password_changed {
                    AuditEntry::new("password.changed", "user", id)
                } else {
                    AuditEntry::new("user.updated", "user", id)
                };
                let entry = entry.diff(&audited(&before), &audited(&after)).field(
                    "password_changed",
                    None,
                    password_changed.then(|| json(&true)).flatten(),
                );
                // An update that changed nothing is not a change to record.
                if !entry.changes.is_empty() {
                    audit::enqueue(conn, entry)?;
                }
                Ok(Some(after))
            })
            .await
    }

    async fn delete(&self, id: UserId, role: Role) -> Result<bool, RepoError> {
        self.db
            .transaction(move |conn| {
                let deleted = diesel::delete(
                    users::table
                        .filter(users::id.eq(id.0))
                        .filter(users::role.eq(role.as_str())),
                )
                .execute(conn)
                .map_err(map_err)?
                    > 0;
                if deleted {
                    audit::enqueue(
                        conn,
                        AuditEntry::new("user.deleted", "user", id).field(
                            "role",
                            json(&role.as_str()),
                            None,
                        ),
                    )?;
                }
                Ok(deleted)
            })
            .await
    }

    async fn list(
        &self,
        role: Role,
        search: Option<String>,
        page: PageRequest,
    ) -> Result<Page<User>, RepoError> {
        self.db
            .run(move |conn| {
                let filtered = || {
                    let mut q = users::table
                        .filter(users::role.eq(role.as_str()))
                        .into_boxed();
                    if let Some(s) = &search {
                        let pattern = like_pattern(s);
                        q = q.filter(
                            users::full_name
                                .ilike(pattern.clone())
                                .or(users::email.ilike(pattern)),
                        );
                    }
                    q
                };
                let total: i64 = filtered().count().get_result(conn).map_err(map_err)?;
                let rows = filtered()
                    .order((users::full_name.asc(), users::id.asc()))
                    .limit(i64::from(page.per_page))
                    .offset(page.offset())
                    .select(UserRow::as_select())
                    .load(conn)
                    .map_err(map_err)?;
                Ok(Page {
                    items: rows_to_users(rows)?,
                    total,
                    page: page.page,
                    per_page: page.per_page,
                })
            })
            .await
    }

    async fn all_with_role(&self, role: Role) -> Result<Vec<User>, RepoError> {
        self.db
            .run(move |conn| {
                users::table
                    .filter(users::role.eq(role.as_str()))
                    .order((users::created_at.asc(), users::id.asc()))
                    .select(UserRow::as_select())
                    .load(conn)
                    .map_err(map_err)
                    .and_then(rows_to_users)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(super::like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
