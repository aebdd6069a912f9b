//! Typed ids: a slot id cannot be passed where a doctor id is expected. Each wraps the
//! row's UUID; the repositories map them to and from the database's columns, the HTTP
//! layer from and to the path and body values.

use std::fmt;
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

typed_id!(
    /// Typed id of a clinic.
    ClinicId
);
typed_id!(
    /// Typed id of a doctor.
    DoctorId
);
typed_id!(
    /// Typed id of a slot.
    SlotId
);
typed_id!(
    /// Typed id of an appointment.
    AppointmentId
);
typed_id!(
    /// Typed id of a review.
    ReviewId
);
