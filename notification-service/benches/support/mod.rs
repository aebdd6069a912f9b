//! What the notification-service's benchmarks share beyond `medbook_test_support::bench`:
//! a doctor to book.

use crate::booking::BookingApp;
use serde_json::json;

/// A doctor in a Berlin clinic, created by a fresh admin; its id.
pub async fn doctor(booking: &BookingApp) -> String {
    let admin = booking.admin().await;
    let doctor = booking
        .doctor(
            &admin,
            json!({"name": "Bench", "city": "Berlin", "address": "1 A St", "time_zone": "Europe/Berlin"}),
            "Dr. Bench",
            "GP",
        )
        .await;
    doctor["id"].as_str().unwrap().to_owned()
}
