//! medbook's gRPC contracts: the generated messages, clients and servers.

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
pub mod audit {
    pub mod v1 {
        tonic::include_proto!("medbook.audit.v1");
    }
}

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
pub mod schedule {
    pub mod v1 {
        tonic::include_proto!("medbook.schedule.v1");
    }
}

pub mod observe;

/// Every medbook proto, encoded, for the reflection services.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/medbook_descriptor.bin"));

/// Timestamps between chrono and protobuf.
pub mod time {
    use chrono::{DateTime, Utc};

    pub fn to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
        }
    }

    /// `None` for a timestamp outside chrono's range or with invalid nanos.
    pub fn from_proto(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
        let nanos = u32::try_from(t.nanos).ok()?;
        DateTime::from_timestamp(t.seconds, nanos)
    }
}
