//! The command line: `serve` (default), `migrate`, `create-admin` and the patient
//! commands, which call the same use cases as the HTTP API.

use crate::domain::{Email, FullName, Password, PatientProfile, RawPatient, UserId};
use crate::service::auth::Registration;
use crate::service::patients::ImportError;
use crate::settings::Settings;
use crate::startup::{self, Application, Services};
use crate::transport::http::dto::common::UserResponse;
use crate::transport::http::dto::patients::PatientRecord;
use anyhow::{bail, Context};
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::path::PathBuf;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "booking-service", version, about = "medbook booking API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create an admin. The password comes from MEDBOOK_ADMIN_PASSWORD or stdin.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Administrator")]
        full_name: String,
    },
    /// Create the account of a doctor (role `doctor`) and link it to the doctor's
    /// record: it sees that doctor's day (`GET /api/v1/doctor/appointments`, the gRPC
    /// day stream). The password comes from MEDBOOK_DOCTOR_PASSWORD or stdin.
    CreateDoctorAccount {
        #[arg(long)]
        email: String,
        /// The doctor's id (`GET /api/v1/doctors`).
        #[arg(long)]
        doctor_id: uuid::Uuid,
    },
    /// Load the demo data set (clinics, ~200 doctors, four weeks of slots, patients,
    /// appointments, reviews) into a database without clinics; otherwise do nothing.
    SeedDemo {
        #[arg(long, default_value_t = 200)]
        doctors: usize,
        #[arg(long, default_value_t = 40)]
        patients: usize,
    },
    /// Print the OpenAPI 3 document of the HTTP API.
    Openapi,
    /// Exit 0 when the running service answers `GET /health` on its ops listener: the
    /// container health check (the image has no curl). Reads the same configuration.
    Healthcheck {
        /// How long to wait for the answer.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Print the configuration as the service reads it (listeners, probe paths, topics,
    /// keys it does not know) as JSON; exit 1 when a key is unknown, 2 when invalid.
    CheckConfig,
    /// Manage patient records.
    #[command(subcommand)]
    Patients(PatientsCommand),
    /// Manage appointments, as the clinic (an admin).
    #[command(subcommand)]
    Appointments(AppointmentsCommand),
}

#[derive(Debug, Subcommand)]
pub enum AppointmentsCommand {
    /// Cancel an appointment; the reason is required (the patient is told it) and the
    /// slot is freed. Prints the appointment as JSON.
    Cancel {
        id: uuid::Uuid,
        /// Why, up to 1000 characters.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PatientsCommand {
    /// List patients (JSON page on stdout).
    List {
        /// Case-insensitive substring of name or e-mail.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 50)]
        per_page: u32,
    },
    /// Show one patient.
    Get { id: Uuid },
    /// Add one patient (without a password: they cannot log in until one is set).
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        full_name: String,
        #[arg(long)]
        birth_date: Option<NaiveDate>,
        #[arg(long)]
        gender: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    /// Import a JSON array of patient records: all or nothing.
    Import { file: PathBuf },
    /// Export all patients as a JSON array that `import` reads.
    Export { file: PathBuf },
}

use medbook_service_kit::cli::print_json as out;
use medbook_service_kit::context::{Actor, Context as WorkContext};
use medbook_service_kit::runner::{Plan, Service};
use std::process::ExitCode;

/// The booking-service binary: its commands over the shared start-up
/// ([`medbook_service_kit::runner`]).
pub struct Binary;

impl Service for Binary {
    type Cli = Cli;
    type Command = Command;
    type Settings = Settings;

    fn plan(cli: Cli) -> Plan<Command> {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => Plan::Serve(Command::Serve),
            Command::Openapi => {
                Plan::Standalone(Box::new(|| print_openapi().map(|()| ExitCode::SUCCESS)))
            }
            Command::CheckConfig => Plan::CheckConfig,
            Command::Healthcheck { timeout_ms } => Plan::Healthcheck { timeout_ms },
            command => Plan::Command(command),
        }
    }

    async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
        if matches!(command, Command::Serve) {
            serve(settings).await?;
            return Ok(ExitCode::SUCCESS);
        }
        // What a command changes is audited as the command (the operator who ran it).
        let context = WorkContext {
            request_id: None,
            actor: Some(Actor::System(format!("cli {}", command_name(&command)))),
            source: Some("cli"),
            caller: Default::default(),
        };
        medbook_service_kit::context::with_context(context, command_run(command, settings)).await?;
        Ok(ExitCode::SUCCESS)
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Serve => "serve",
        Command::Migrate => "migrate",
        Command::CreateAdmin { .. } => "create-admin",
        Command::CreateDoctorAccount { .. } => "create-doctor-account",
        Command::Openapi => "openapi",
        Command::SeedDemo { .. } => "seed-demo",
        Command::Patients(_) => "patients",
        Command::Appointments(_) => "appointments",
        Command::Healthcheck { .. } => "healthcheck",
        Command::CheckConfig => "check-config",
    }
}

async fn command_run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let mut settings = settings;
            settings.database.run_migrations = false;
            let services = Services::build(&settings).await?;
            let applied = startup::apply_migrations(&services.db).await?;
            out(&serde_json::json!({ "applied": applied }))
        }
        Command::CreateAdmin { email, full_name } => {
            let services = Services::build(&settings).await?;
            let password = password_from("MEDBOOK_ADMIN_PASSWORD", "admin")?;
            let mut errors = crate::domain::ValidationErrors::new();
            let email = errors.check("email", Email::parse(&email));
            let password = errors.check("password", Password::parse(&password));
            let full_name = errors.check("full_name", FullName::parse(&full_name));
            let reg = errors
                .finish(|| {
                    Some(Registration {
                        email: email?,
                        password: password?,
                        full_name: full_name?,
                        birth_date: None,
                        gender: None,
                        phone: None,
                    })
                })
                .map_err(|e| anyhow::anyhow!("invalid admin: {e}"))?;
            let admin = services.auth.create_admin(reg).await?;
            out(&UserResponse::from(admin))
        }
        Command::CreateDoctorAccount { email, doctor_id } => {
            let services = Services::build(&settings).await?;
            let doctor = services
                .catalog
                .doctor(crate::domain::DoctorId(doctor_id))
                .await
                .map_err(|e| anyhow::anyhow!("doctor {doctor_id}: {e}"))?;
            let password = password_from("MEDBOOK_DOCTOR_PASSWORD", "doctor")?;
            let mut errors = crate::domain::ValidationErrors::new();
            let email = errors.check("email", Email::parse(&email));
            let password = errors.check("password", Password::parse(&password));
            let full_name = errors.check("full_name", FullName::parse(&doctor.full_name));
            let reg = errors
                .finish(|| {
                    Some(Registration {
                        email: email?,
                        password: password?,
                        full_name: full_name?,
                        birth_date: None,
                        gender: None,
                        phone: None,
                    })
                })
                .map_err(|e| anyhow::anyhow!("invalid doctor account: {e}"))?;
            // The account and the doctor's link to it, both or neither.
            let account = match services.auth.create_doctor_account(doctor.id, reg).await {
                Err(crate::service::ServiceError::Rejected(
                    crate::domain::rejection::Rejection::DoctorHasAccount,
                )) => bail!("doctor {doctor_id} already has an account"),
                other => other?,
            };
            out(&UserResponse::from(account))
        }
        Command::Openapi => print_openapi(),
        Command::Healthcheck { .. } | Command::CheckConfig => {
            bail!("healthcheck and check-config are answered by the runner, before start-up")
        }
        Command::SeedDemo { doctors, patients } => {
            // Demo accounts have a published password: never in a real clinic's data.
            if settings.profile == crate::settings::Profile::Production {
                anyhow::bail!(
                    "seed-demo creates accounts with a published password and runs only under the dev profile (MEDBOOK_PROFILE=dev)"
                );
            }
            let services = Services::build(&settings).await?;
            let report = crate::demo::seed(&services, doctors.max(1), patients.max(1)).await?;
            out(&report)
        }
        Command::Patients(cmd) => patients(cmd, &Services::build(&settings).await?).await,
        Command::Appointments(AppointmentsCommand::Cancel { id, reason }) => {
            let services = Services::build(&settings).await?;
            // The use case holds the rules, as for HTTP and gRPC: an admin gives a reason.
            let cancelled = services
                .appointments
                .cancel(
                    crate::service::appointments::Actor::Admin,
                    crate::domain::AppointmentId(id),
                    reason,
                )
                .await
                .map_err(refusal)?;
            out(&crate::transport::http::dto::appointments::AppointmentResponse::from(cancelled))
        }
    }
}

/// Prints the OpenAPI document; needs no configuration.
fn print_openapi() -> anyhow::Result<()> {
    out(&crate::transport::http::openapi_document())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    startup::stop_on_signals(app.handle());
    app.run_until_stopped().await?;
    Ok(())
}

/// A new account's password: from the variable `var`, else one line of stdin.
fn password_from(var: &str, whose: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {whose} password from stdin"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no {whose} password: set {var} or pipe it on stdin");
    }
    Ok(password)
}

/// A use case's refusal in the words HTTP and gRPC use.
fn refusal(e: crate::service::ServiceError) -> anyhow::Error {
    use crate::service::ServiceError;
    use crate::transport::common as wording;
    match e {
        ServiceError::Rejected(r) => anyhow::anyhow!("{} ({})", wording::rejection(r), r.code()),
        other => other.into(),
    }
}

async fn patients(cmd: PatientsCommand, services: &Services) -> anyhow::Result<()> {
    let svc = &services.patients;
    match cmd {
        PatientsCommand::List {
            search,
            page,
            per_page,
        } => {
            let page =
                crate::transport::http::dto::common::page_request(Some(page), Some(per_page))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let result = svc.list(search, page).await?;
            out(&crate::transport::http::dto::patients::PatientPage::from(
                result,
            ))
        }
        PatientsCommand::Get { id } => out(&UserResponse::from(svc.get(UserId(id)).await?)),
        PatientsCommand::Add {
            email,
            full_name,
            birth_date,
            gender,
            phone,
        } => {
            let raw = RawPatient {
                email,
                full_name,
                birth_date,
                gender,
                phone,
            };
            let profile = PatientProfile::parse(&raw, svc.today())
                .map_err(|e| anyhow::anyhow!("invalid patient: {e}"))?;
            out(&UserResponse::from(svc.create(profile, None).await?))
        }
        PatientsCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let records: Vec<PatientRecord> = serde_json::from_str(&text).with_context(|| {
                format!("{} is not a JSON array of patient records", file.display())
            })?;
            match svc
                .import(records.into_iter().map(Into::into).collect())
                .await
            {
                Ok(users) => out(&serde_json::json!({ "imported": users.len() })),
                Err(ImportError::Rejected(rejected)) => {
                    let report: Vec<_> = rejected
                        .iter()
                        .map(|r| serde_json::json!({"index": r.index, "email": r.email, "errors": r.errors}))
                        .collect();
                    out(&serde_json::json!({ "imported": 0, "rejected": report }))?;
                    bail!(
                        "{} record(s) rejected; nothing was imported",
                        rejected.len()
                    )
                }
                Err(ImportError::Service(e)) => Err(e.into()),
            }
        }
        PatientsCommand::Export { file } => {
            let records: Vec<PatientRecord> = svc
                .export()
                .await?
                .into_iter()
                .map(PatientRecord::from)
                .collect();
            let json = serde_json::to_string_pretty(&records)?;
            std::fs::write(&file, json + "\n")
                .with_context(|| format!("writing {}", file.display()))?;
            out(&serde_json::json!({ "exported": records.len(), "file": file }))
        }
    }
}
