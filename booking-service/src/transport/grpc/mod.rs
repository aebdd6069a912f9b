//! The internal gRPC ScheduleService (`medbook.schedule.v1`), beside the HTTP API on its
//! own port. Every call goes through the same use cases and the same input rules as
//! HTTP: the slot listing's filter, the booking's reason and idempotency key, the access
//! token check with revocation. Domain errors become gRPC statuses in [`status`], one
//! exhaustive match. gRPC health and reflection (v1 and v1alpha) are served beside it.

mod day;

use crate::domain::inputs;
use crate::domain::rejection::Rejection;
use crate::domain::{AppointmentId, DoctorId, FieldError, Role, SlotId, UserId};
use crate::service::appointments::{Actor, AppointmentService};
use crate::service::authenticate::{Authenticator, Caller};
use crate::service::booking_ports::SlotFilter;
use crate::service::schedule::DaySchedule;
use crate::service::slots::SlotService;
use crate::service::ServiceError;
use crate::transport::common::{self as wording, bearer, Refusal};
use medbook_proto::schedule::v1 as pb;
use medbook_proto::schedule::v1::schedule_service_server::{
    ScheduleService, ScheduleServiceServer,
};
use medbook_proto::time::{from_proto, to_proto};
use medbook_service_kit::context::{self, Actor as AuditActor, Context};
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use day::DayStream;

/// The use cases the ScheduleService calls.
#[derive(Clone)]
pub struct Cases {
    pub slots: Arc<SlotService>,
    pub appointments: Arc<AppointmentService>,
    pub schedule: Arc<DaySchedule>,
    pub authenticator: Arc<Authenticator>,
}

/// The ScheduleService over the use cases.
#[derive(Clone)]
pub struct Schedule {
    cases: Cases,
    watcher_buffer: usize,
    watch_recheck: std::time::Duration,
}

impl Schedule {
    pub fn new(cases: Cases, watcher_buffer: usize, watch_recheck: std::time::Duration) -> Self {
        Self {
            cases,
            watcher_buffer,
            watch_recheck,
        }
    }

    /// The bearer token of a request's `authorization` metadata.
    fn token<T>(req: &Request<T>) -> Result<String, Status> {
        let value = req
            .metadata()
            .get("authorization")
            .map(|v| {
                v.to_str()
                    .map_err(|_| Status::unauthenticated("malformed authorization metadata"))
            })
            .transpose()?;
        bearer(value)
            .map(str::to_owned)
            .map_err(|f| status(ServiceError::Unauthorized(f)))
    }

    /// The caller of a request: its `authorization: Bearer <access token>` checked as
    /// every transport checks it.
    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        self.cases
            .authenticator
            .authenticate(&Self::token(req)?)
            .await
            .map_err(status)
    }
}

/// Every service error as a gRPC status, one exhaustive match; a rejection's code rides
/// along as `ErrorInfo`.
pub fn status(e: ServiceError) -> Status {
    let info = |code: Code, reason: &str, message: &str| {
        Status::with_error_details(
            code,
            message,
            ErrorDetails::with_error_info(reason, "medbook", std::collections::HashMap::new()),
        )
    };
    match e {
        ServiceError::Validation(v) => invalid(v.0),
        ServiceError::InvalidCredentials => Status::unauthenticated("invalid credentials"),
        ServiceError::Unauthorized(f) => Status::unauthenticated(wording::auth_failure(f)),
        ServiceError::Forbidden => Status::permission_denied("not allowed for this caller"),
        ServiceError::Rejected(r) => info(rejection_code(r), r.code(), wording::rejection(r)),
        ServiceError::NotFound(what) => Status::not_found(format!("{what} not found")),
        ServiceError::TooManyRequests { .. } => {
            Status::resource_exhausted("too many attempts; retry later")
        }
        ServiceError::Overloaded { .. } => Status::unavailable("overloaded; retry shortly"),
        ServiceError::Unavailable(_) | ServiceError::AuditUnavailable => {
            Status::unavailable("a dependency is unavailable")
        }
        ServiceError::Internal(e) => {
            tracing::error!(error = %format!("{e:#}"), "grpc: internal error");
            Status::internal("internal error")
        }
    }
}

/// The gRPC code of each kind of refusal: `ABORTED` for a clash with stored data (a
/// taken slot, a concurrent change: read again or pick another), `FAILED_PRECONDITION`
/// for a rule or what the caller must do first.
fn rejection_code(r: Rejection) -> Code {
    match wording::refusal(r) {
        Refusal::ActFirst | Refusal::Rule => Code::FailedPrecondition,
        Refusal::NotFound => Code::NotFound,
        Refusal::Clash => Code::Aborted,
    }
}

/// `INVALID_ARGUMENT` with one field violation per bad field.
fn invalid(errors: Vec<FieldError>) -> Status {
    let message = errors
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ");
    let mut details = ErrorDetails::new();
    for f in &errors {
        details.add_bad_request_violation(f.field.clone(), f.message.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

pub(crate) fn appointment(a: crate::domain::booking::Appointment) -> pb::Appointment {
    pb::Appointment {
        id: a.id.0.to_string(),
        slot_id: a.slot_id.0.to_string(),
        patient_id: a.patient_id.0.to_string(),
        doctor_id: a.doctor_id.0.to_string(),
        starts_at: Some(to_proto(a.starts_at)),
        ends_at: Some(to_proto(a.ends_at)),
        reason: a.reason,
        status: a.status.as_str().to_owned(),
        version: 0,
        patient_name: String::new(),
        patient_age: None,
    }
}

/// A day's appointment with who the patient is.
pub(crate) fn day_appointment(e: crate::service::schedule::DayEntry) -> pb::Appointment {
    pb::Appointment {
        patient_name: e.patient.full_name,
        patient_age: e.patient.age,
        ..appointment(e.appointment)
    }
}

/// Runs `fut` as a gRPC request on behalf of `caller` (what it changes is audited so).
async fn as_caller<F: std::future::Future>(caller: &Caller, fut: F) -> F::Output {
    let ctx = Context {
        request_id: Some(uuid::Uuid::new_v4().to_string()),
        actor: Some(AuditActor::User {
            id: caller.id.to_string(),
            role: caller.role.as_str().to_owned(),
        }),
        source: Some("grpc"),
        caller: Default::default(),
    };
    context::with_context(ctx, fut).await
}

#[tonic::async_trait]
impl ScheduleService for Schedule {
    async fn get_available_slots(
        &self,
        request: Request<pb::GetAvailableSlotsRequest>,
    ) -> Result<Response<pb::GetAvailableSlotsResponse>, Status> {
        let r = request.into_inner();
        let mut errors = Vec::new();
        let doctor_id = inputs::id("doctor_id", &r.doctor_id)
            .map_err(|e| errors.push(e))
            .ok();
        let mut time = |field: &str, t: &Option<prost_types::Timestamp>| match t {
            None => None,
            Some(t) => from_proto(t).or_else(|| {
                errors.push(FieldError::new(field, "is not a valid timestamp"));
                None
            }),
        };
        let (from, to) = (time("from", &r.from), time("to", &r.to));
        let (Some(doctor_id), true) = (doctor_id, errors.is_empty()) else {
            return Err(invalid(errors));
        };
        // The HTTP listing's window rules, for available slots.
        let filter = SlotFilter::parse(
            DoctorId(doctor_id),
            from,
            to,
            Some("available"),
            chrono::Utc::now(),
        )
        .map_err(|e| invalid(e.0))?;
        let slots = self
            .cases
            .slots
            .list(filter)
            .await
            .map_err(status)?
            .into_iter()
            .map(|s| pb::Slot {
                id: s.id.0.to_string(),
                doctor_id: s.doctor_id.0.to_string(),
                starts_at: Some(to_proto(s.starts_at)),
                ends_at: Some(to_proto(s.ends_at)),
            })
            .collect();
        Ok(Response::new(pb::GetAvailableSlotsResponse { slots }))
    }

    async fn book_slot(
        &self,
        request: Request<pb::BookSlotRequest>,
    ) -> Result<Response<pb::Appointment>, Status> {
        let caller = self.caller(&request).await?;
        if caller.role != Role::Patient {
            return Err(Status::permission_denied("only patients book appointments"));
        }
        let r = request.into_inner();
        let mut errors = Vec::new();
        let slot_id = inputs::id("slot_id", &r.slot_id)
            .map_err(|e| errors.push(e))
            .ok();
        let reason = inputs::visit_reason(Some(&r.reason))
            .map_err(|e| errors.push(e))
            .ok();
        // Empty means none.
        let key = inputs::idempotency_key(
            "idempotency_key",
            Some(r.idempotency_key.as_str()).filter(|k| !k.is_empty()),
        )
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
        let (Some(slot_id), Some(reason), true) = (slot_id, reason, errors.is_empty()) else {
            return Err(invalid(errors));
        };
        let booked = as_caller(
            &caller,
            self.cases
                .appointments
                .book(caller.id, SlotId(slot_id), reason, key),
        )
        .await
        .map_err(status)?;
        Ok(Response::new(appointment(booked.appointment)))
    }

    async fn cancel_appointment(
        &self,
        request: Request<pb::CancelAppointmentRequest>,
    ) -> Result<Response<pb::Appointment>, Status> {
        let caller = self.caller(&request).await?;
        let actor = match caller.role {
            Role::Patient => Actor::Patient(caller.id),
            Role::Admin => Actor::Admin,
            Role::Doctor => {
                return Err(Status::permission_denied(
                    "only patients and admins cancel appointments",
                ))
            }
        };
        let r = request.into_inner();
        let id = inputs::id("appointment_id", &r.appointment_id).map_err(|e| invalid(vec![e]))?;
        // Empty means none; an admin's missing reason is refused by the use case.
        let reason = Some(r.reason).filter(|r| !r.is_empty());
        let cancelled = as_caller(
            &caller,
            self.cases
                .appointments
                .cancel(actor, AppointmentId(id), reason),
        )
        .await
        .map_err(status)?;
        Ok(Response::new(appointment(cancelled)))
    }

    async fn record_attendance(
        &self,
        request: Request<pb::RecordAttendanceRequest>,
    ) -> Result<Response<pb::Appointment>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let mut errors = Vec::new();
        let id = inputs::id("appointment_id", &r.appointment_id)
            .map_err(|e| errors.push(e))
            .ok();
        let outcome = r
            .outcome
            .parse::<crate::domain::decisions::Attendance>()
            .map_err(|m| errors.push(FieldError::new("outcome", m)))
            .ok();
        let (Some(id), Some(outcome)) = (id, outcome) else {
            return Err(invalid(errors));
        };
        let recorder = match caller.role {
            Role::Admin => crate::domain::decisions::Recorder::Admin(caller.id),
            Role::Doctor => crate::domain::decisions::Recorder::Doctor {
                user: caller.id,
                doctor: self
                    .cases
                    .schedule
                    .own_doctor(caller.id)
                    .await
                    .map_err(status)?,
            },
            Role::Patient => {
                return Err(Status::permission_denied(
                    "only the appointment's doctor or an admin records attendance",
                ))
            }
        };
        let marked = as_caller(
            &caller,
            self.cases
                .appointments
                .record_attendance(recorder, AppointmentId(id), outcome),
        )
        .await
        .map_err(status)?;
        Ok(Response::new(appointment(marked)))
    }

    type StreamDailyAppointmentsStream = DayStream;

    async fn stream_daily_appointments(
        &self,
        request: Request<pb::StreamDailyAppointmentsRequest>,
    ) -> Result<Response<Self::StreamDailyAppointmentsStream>, Status> {
        let token = Self::token(&request)?;
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let mut errors = Vec::new();
        let doctor = r.doctor_id.parse::<uuid::Uuid>().ok();
        if doctor.is_none() {
            errors.push(FieldError::new("doctor_id", "must be a UUID"));
        }
        let date = chrono::NaiveDate::parse_from_str(&r.date, "%Y-%m-%d").ok();
        if date.is_none() {
            errors.push(FieldError::new("date", "must be a date YYYY-MM-DD"));
        }
        let (Some(doctor), Some(date)) = (doctor, date) else {
            return Err(invalid(errors));
        };
        let schedule = self.cases.schedule.clone();
        let who = (UserId(caller.id.0), caller.role);
        let day = schedule
            .day(who, DoctorId(doctor), Some(date))
            .await
            .map_err(status)?;
        // The watch lasts as long as the access it was opened with: the token is
        // checked again (expiry, logout, password reset) and so is the right to the
        // day, from the database.
        let cases = self.cases.clone();
        let access = day::Access {
            expires_at: caller.expires_at,
            recheck_every: self.watch_recheck,
            check: Arc::new(move || {
                let cases = cases.clone();
                let token = token.clone();
                Box::pin(async move {
                    cases
                        .authenticator
                        .authenticate(&token)
                        .await
                        .map_err(status)?;
                    cases
                        .schedule
                        .may_see(who, DoctorId(doctor))
                        .await
                        .map_err(status)
                })
            }),
        };
        Ok(Response::new(day::watch(
            schedule,
            day,
            self.watcher_buffer,
            access,
        )))
    }
}

/// The ScheduleService's methods, whose metric series exist before the first call.
pub const METHODS: &[(&str, &str)] = &[
    ("medbook.schedule.v1.ScheduleService", "GetAvailableSlots"),
    ("medbook.schedule.v1.ScheduleService", "BookSlot"),
    ("medbook.schedule.v1.ScheduleService", "CancelAppointment"),
    (
        "medbook.schedule.v1.ScheduleService",
        "StreamDailyAppointments",
    ),
];

/// The services this server answers, as reflection lists them.
pub const SERVED: [&str; 4] = [
    "medbook.schedule.v1.ScheduleService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("grpc reflection: {0}")]
    Reflection(tonic_reflection::server::Error),
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the ScheduleService, gRPC health and reflection on `addr` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    schedule: Schedule,
    metrics: medbook_proto::observe::GrpcMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ScheduleServiceServer<Schedule>>()
        .await;
    // Reflection names what this server serves (the descriptor set holds the audit
    // protos too), in both protocol versions: grpcurl 1.8 speaks v1alpha.
    let mut reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(medbook_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(medbook_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for name in SERVED {
        reflection_v1 = reflection_v1.with_service_name(name);
        reflection_v1alpha = reflection_v1alpha.with_service_name(name);
    }
    let router = tonic::transport::Server::builder()
        // A server span (continuing the caller's trace) and RED metrics per call.
        .layer(medbook_proto::observe::ServerObserveLayer::new(
            metrics, &SERVED,
        ))
        .add_service(health_service)
        .add_service(reflection_v1.build_v1().map_err(ServeError::Reflection)?)
        .add_service(
            reflection_v1alpha
                .build_v1alpha()
                .map_err(ServeError::Reflection)?,
        )
        .add_service(ScheduleServiceServer::new(schedule));
    let mut stop = stop;
    router
        .serve_with_incoming_shutdown(
            // Small responses go out at once (no Nagle delay waiting for an ACK).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            },
        )
        .await
        .map_err(ServeError::from)
}

/// Binds the gRPC listener (port 0 picks a free one).
pub async fn bind(addr: &str) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
