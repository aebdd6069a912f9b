//! `booking-service seed-demo`: a living demo data set — clinics in several cities and
//! time zones, ~200 doctors across 15 specialties, four weeks of slots, patients with
//! upcoming appointments and past visits with reviews. Built through the same use cases
//! as the API (except past visits, which the booking rules rightly refuse). Runs only on
//! a database without clinics, so it is safe to call on every start.

// The demo tables are non-empty constants picked from modulo their length, and the
// numbers derived from loop counters are small: neither indexing nor these casts can
// fail here.
#![allow(
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]
use crate::domain::booking::{parse_clinic, DoctorInput, DoctorStatus};
use crate::domain::schedule::{RawWeeklyTemplate, WeeklyTemplate};
use crate::domain::{Email, FullName, Password, PatientProfile, RawPatient};
use crate::repository::demo::{has_clinics, insert_past_visits, PastVisit};
use crate::service::auth::Registration;
use crate::startup::Services;
use chrono::{Datelike, Duration, DurationRound, NaiveDate, TimeZone, Utc};
use serde::Serialize;

const CLINICS: &[(&str, &str, &str, &str)] = &[
    (
        "Charité Outpatient Centre",
        "Berlin",
        "Luisenstraße 64",
        "Europe/Berlin",
    ),
    (
        "Thames Medical Practice",
        "London",
        "221 Baker Street",
        "Europe/London",
    ),
    (
        "Hudson Health Partners",
        "New York",
        "350 5th Avenue",
        "America/New_York",
    ),
    (
        "Clínica Paulista",
        "São Paulo",
        "Avenida Paulista 1578",
        "America/Sao_Paulo",
    ),
    (
        "Harbour Medical",
        "Sydney",
        "1 Macquarie Street",
        "Australia/Sydney",
    ),
    (
        "Shibuya Family Clinic",
        "Tokyo",
        "2-21-1 Shibuya",
        "Asia/Tokyo",
    ),
    (
        "Marine Drive Hospital",
        "Mumbai",
        "Netaji Subhash Road 12",
        "Asia/Kolkata",
    ),
];

const SPECIALTIES: &[&str] = &[
    "Cardiology",
    "Dermatology",
    "Endocrinology",
    "Family Medicine",
    "Gastroenterology",
    "Gynecology",
    "Neurology",
    "Oncology",
    "Ophthalmology",
    "Orthopedics",
    "Otolaryngology",
    "Pediatrics",
    "Psychiatry",
    "Pulmonology",
    "Urology",
];

const FIRST: &[&str] = &[
    "Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jonas", "Kavya",
    "Liam", "Maya", "Noah", "Olga", "Pedro", "Qing", "Rosa", "Samir", "Tara",
];
const LAST: &[&str] = &[
    "Adams", "Becker", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hoffmann", "Ito",
    "Jensen", "Kowalski", "Lopez",
];

const REVIEWS: &[(i16, &str)] = &[
    (
        5,
        "Took the time to explain everything. Highly recommended.",
    ),
    (4, "Very competent; the wait was a bit long."),
    (5, "Friendly, thorough and on time."),
    (3, "Fine, but the visit felt rushed."),
    (4, "Good advice and a clear treatment plan."),
    (2, "Hard to reach the practice afterwards."),
];

/// What was created.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub skipped: bool,
    pub clinics: usize,
    pub doctors: usize,
    pub slots: u64,
    pub patients: usize,
    pub upcoming_appointments: usize,
    pub past_visits: u64,
    /// Every demo patient has this password; their e-mails are patientNN@demo.medbook.local.
    pub patient_password: &'static str,
    /// Doctors with a login: doctorNN@demo.medbook.local, this password.
    pub doctor_accounts: usize,
    pub doctor_password: &'static str,
}

pub const DEMO_PATIENT_PASSWORD: &str = "demo-patient";
pub const DEMO_DOCTOR_PASSWORD: &str = "demo-doctor";
/// How many doctors get a login (the first active ones).
const DOCTOR_ACCOUNTS: usize = 5;

pub async fn seed(
    services: &Services,
    doctors_total: usize,
    patients_total: usize,
) -> anyhow::Result<DemoReport> {
    let mut report = DemoReport {
        skipped: false,
        clinics: 0,
        doctors: 0,
        slots: 0,
        patients: 0,
        upcoming_appointments: 0,
        past_visits: 0,
        patient_password: DEMO_PATIENT_PASSWORD,
        doctor_accounts: 0,
        doctor_password: DEMO_DOCTOR_PASSWORD,
    };
    if has_clinics(&services.db).await? {
        report.skipped = true;
        return Ok(report);
    }
    let mut clinics = Vec::new();
    for (name, city, address, tz) in CLINICS {
        let input = parse_clinic(name, city, address, tz).map_err(|e| anyhow::anyhow!("{e}"))?;
        clinics.push(services.catalog.create_clinic(input).await?);
    }
    report.clinics = clinics.len();

    let today = Utc::now().date_naive();
    let from = today + Duration::days(1);
    let template = WeeklyTemplate::parse(&RawWeeklyTemplate {
        weekdays: ["mon", "tue", "wed", "thu", "fri"]
            .map(String::from)
            .to_vec(),
        start_time: "09:00".into(),
        end_time: "17:00".into(),
        slot_minutes: 30,
        buffer_minutes: 0,
        from,
        to: from + Duration::days(27),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut doctors = Vec::new();
    for i in 0..doctors_total {
        let clinic = &clinics[i % clinics.len()];
        let status = match i % 25 {
            7 => DoctorStatus::OnLeave,
            13 => DoctorStatus::Inactive,
            _ => DoctorStatus::Active,
        };
        let name = format!(
            "Dr. {} {}",
            FIRST[i % FIRST.len()],
            LAST[(i / FIRST.len() + i) % LAST.len()]
        );
        let doctor = services
            .catalog
            .create_doctor(DoctorInput {
                full_name: name,
                specialty: SPECIALTIES[(i * 7) % SPECIALTIES.len()].to_owned(),
                clinic_id: clinic.id,
                status,
                bio: format!(
                    "{} specialist seeing patients in {}.",
                    SPECIALTIES[(i * 7) % SPECIALTIES.len()],
                    clinic.city
                ),
                years_of_experience: (3 + (i * 11) % 30) as i32,
                user_id: None,
            })
            .await?;
        report.slots += services.slots.generate(doctor.id, template).await?.created;
        doctors.push(doctor);
    }
    report.doctors = doctors.len();

    let mut patients = Vec::new();
    for i in 1..=patients_total {
        let raw = RawPatient {
            email: format!("patient{i:02}@demo.medbook.local"),
            full_name: format!(
                "{} {}",
                FIRST[(i * 3) % FIRST.len()],
                LAST[(i * 5) % LAST.len()]
            ),
            birth_date: NaiveDate::from_ymd_opt(
                1950 + (i as i32 * 7) % 55,
                1 + (i as u32 % 12),
                1 + (i as u32 % 28),
            ),
            gender: Some(["female", "male", "other", "undisclosed"][i % 4].to_owned()),
            phone: Some(format!("+4930{:07}", 1_000_000 + i)),
        };
        let profile = PatientProfile::parse(&raw, today).map_err(|e| anyhow::anyhow!("{e}"))?;
        let password = Password::parse(DEMO_PATIENT_PASSWORD).map_err(anyhow::Error::msg)?;
        patients.push(
            services
                .patients
                .create_verified(profile, Some(password))
                .await?,
        );
    }
    report.patients = patients.len();

    // Upcoming appointments: each patient books two slots of active doctors.
    for (i, patient) in patients.iter().enumerate() {
        for k in 0..2 {
            let doctor = &doctors[(i * 13 + k * 71) % doctors.len()];
            if doctor.status != DoctorStatus::Active {
                continue;
            }
            let slots = services
                .slots
                .list(crate::service::booking_ports::SlotFilter {
                    doctor_id: doctor.id,
                    from: Utc::now() + Duration::days(2),
                    to: Utc::now() + Duration::days(20),
                    status: Some(crate::domain::booking::SlotStatus::Available),
                })
                .await?;
            if let Some(slot) = slots.get((i * 5 + k) % slots.len().max(1)) {
                let booked = services
                    .appointments
                    .book(patient.id, slot.id, "Follow-up".into(), None)
                    .await;
                if booked.is_ok() {
                    report.upcoming_appointments += 1;
                }
            }
        }
    }

    // Past visits with reviews over the last eight weeks.
    let mut visits = Vec::new();
    for (i, doctor) in doctors.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let tz: chrono_tz::Tz = doctor
            .clinic
            .time_zone
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for k in 0..3 {
            let day = today - Duration::days(7 + ((i * 3 + k * 11) % 49) as i64);
            let day = match day.weekday().num_days_from_monday() {
                5 => day - Duration::days(1),
                6 => day - Duration::days(2),
                _ => day,
            };
            let Some(local) = day.and_hms_opt(10 + k as u32 * 2, 0, 0) else {
                continue;
            };
            let Some(start) = tz.from_local_datetime(&local).earliest() else {
                continue;
            };
            let start = start.with_timezone(&Utc);
            let patient = &patients[(i + k * 7) % patients.len()];
            let review = (k != 2).then(|| {
                let (rating, text) = REVIEWS[(i + k) % REVIEWS.len()];
                (rating, text.to_owned())
            });
            visits.push(PastVisit {
                doctor_id: doctor.id.into(),
                patient_id: patient.id.0,
                starts_at: start,
                ends_at: start + Duration::minutes(30),
                review,
                status: "completed",
            });
        }
    }
    // Doctors with a login, each with two visits earlier today whose attendance is
    // theirs to record (attended or no-show), beside their upcoming days.
    let with_login: Vec<_> = doctors
        .iter()
        .filter(|d| d.status == DoctorStatus::Active)
        .take(DOCTOR_ACCOUNTS)
        .collect();
    let now = Utc::now();
    let half_hour = now
        .duration_trunc(Duration::minutes(30))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (n, doctor) in with_login.iter().enumerate() {
        let reg = Registration {
            email: Email::parse(&format!("doctor{:02}@demo.medbook.local", n + 1))
                .map_err(anyhow::Error::msg)?,
            password: Password::parse(DEMO_DOCTOR_PASSWORD).map_err(anyhow::Error::msg)?,
            full_name: FullName::parse(&doctor.full_name).map_err(anyhow::Error::msg)?,
            birth_date: None,
            gender: None,
            phone: None,
        };
        services.auth.create_doctor_account(doctor.id, reg).await?;
        report.doctor_accounts += 1;
        for k in 0..2usize {
            // Each patient's visits of today are hours apart, whoever the doctor.
            let index = n * 2 + k;
            let round = i64::try_from(index / patients.len().max(1)).unwrap_or(0);
            let half_hours = 1 + 2 * i64::try_from(k).unwrap_or(0) + 4 * round;
            let start = half_hour - Duration::minutes(30 * half_hours);
            let patient = &patients[index % patients.len()];
            visits.push(PastVisit {
                doctor_id: doctor.id.into(),
                patient_id: patient.id.0,
                starts_at: start,
                ends_at: start + Duration::minutes(30),
                review: None,
                status: "booked",
            });
        }
    }
    report.past_visits = insert_past_visits(&services.db, visits).await?;
    Ok(report)
}
