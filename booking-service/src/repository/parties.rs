//! The people and place an event names — patient, doctor, clinic — as hand-written
//! statements select them (`u.id AS patient_id, u.email, u.full_name AS patient_name,
//! d.id AS doctor_id, d.full_name AS doctor_name, d.specialty, c.id AS clinic_id,
//! c.name AS clinic_name, c.city, c.address, c.time_zone`).

use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use medbook_shared::events::{ClinicInfo, DoctorInfo, PatientInfo};
use uuid::Uuid;

/// The select list of [`PartiesRow`], from `users u`, `doctors d` and `clinics c`.
macro_rules! parties_columns {
    () => {
        "u.id AS patient_id, u.email, u.full_name AS patient_name,
       d.id AS doctor_id, d.full_name AS doctor_name, d.specialty,
       c.id AS clinic_id, c.name AS clinic_name, c.city, c.address, c.time_zone"
    };
}
pub(super) use parties_columns;

#[derive(QueryableByName)]
pub(super) struct PartiesRow {
    #[diesel(sql_type = SqlUuid)]
    patient_id: Uuid,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Text)]
    patient_name: String,
    #[diesel(sql_type = SqlUuid)]
    doctor_id: Uuid,
    #[diesel(sql_type = Text)]
    doctor_name: String,
    #[diesel(sql_type = Text)]
    specialty: String,
    #[diesel(sql_type = SqlUuid)]
    clinic_id: Uuid,
    #[diesel(sql_type = Text)]
    clinic_name: String,
    #[diesel(sql_type = Text)]
    city: String,
    #[diesel(sql_type = Text)]
    address: String,
    #[diesel(sql_type = Text)]
    time_zone: String,
}

impl PartiesRow {
    pub(super) fn infos(self) -> (PatientInfo, DoctorInfo, ClinicInfo) {
        (
            PatientInfo {
                id: self.patient_id,
                email: self.email,
                full_name: self.patient_name,
            },
            DoctorInfo {
                id: self.doctor_id,
                full_name: self.doctor_name,
                specialty: self.specialty,
            },
            ClinicInfo {
                id: self.clinic_id,
                name: self.clinic_name,
                city: self.city,
                address: self.address,
                time_zone: self.time_zone,
            },
        )
    }
}
