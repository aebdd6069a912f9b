//! Secret links that act without a login: the manage link of an appointment (see,
//! cancel, reschedule), a waitlist offer's booking link, a calendar feed's URL.
//!
//! Only a token's SHA-256 is ever stored ([`token_hash`]); a request carrying a token
//! is matched by that hash. A manage link's token is derived (HMAC-SHA-256 under a
//! key of the service's secret) from the appointment and its patient, so every e-mail
//! of the appointment — booked, moved, reminded — carries the same link without the
//! token being kept anywhere; it is specific to that appointment and that patient and
//! cannot be guessed without the key. Offer and feed tokens are random.

use super::{AppointmentId, UserId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of a token: what is stored and looked up.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token (256 bits, URL-safe).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `base` with `?token=…` (or `&token=…`) appended.
pub fn with_token(base: &str, token: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}token={token}")
}

/// Whether a presented token has the shape of ours (43 URL-safe characters): anything
/// else is refused before a lookup.
pub fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Makes appointments' manage links.
#[derive(Clone)]
pub struct ManageLinks {
    key: std::sync::Arc<[u8; 32]>,
    base_url: std::sync::Arc<str>,
}

impl std::fmt::Debug for ManageLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManageLinks")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ManageLinks {
    /// Links under `base_url`, keyed by `secret` (the service's signing secret; a
    /// key of its own is derived from it, so the two uses never share a key).
    pub fn new(secret: &[u8], base_url: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"medbook manage links v1\n");
        h.update(secret);
        Self {
            key: std::sync::Arc::new(h.finalize().into()),
            base_url: base_url.into(),
        }
    }

    /// The token of this appointment's link for this patient.
    pub fn token(&self, appointment: AppointmentId, patient: UserId) -> String {
        // HMAC accepts keys of any length; 32 bytes never fails.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.key.as_slice()) else {
            unreachable!("HMAC takes a key of any length")
        };
        mac.update(format!("{}\n{}", appointment.0, patient.0).as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The stored hash of the appointment's token.
    pub fn hash(&self, appointment: AppointmentId, patient: UserId) -> String {
        token_hash(&self.token(appointment, patient))
    }

    /// The link itself, as the e-mails carry it.
    pub fn url(&self, appointment: AppointmentId, patient: UserId) -> String {
        with_token(&self.base_url, &self.token(appointment, patient))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_manage_token_is_specific_to_the_appointment_the_patient_and_the_key() {
        let links = ManageLinks::new(b"secret", "https://clinic.example/manage");
        let (a, p) = (AppointmentId(Uuid::new_v4()), UserId(Uuid::new_v4()));
        let token = links.token(a, p);
        assert!(well_formed(&token), "{token}");
        assert_eq!(token, links.token(a, p), "stable across e-mails");
        assert_ne!(token, links.token(AppointmentId(Uuid::new_v4()), p));
        assert_ne!(token, links.token(a, UserId(Uuid::new_v4())));
        assert_ne!(
            token,
            ManageLinks::new(b"other", "https://clinic.example/manage").token(a, p)
        );
        assert_eq!(
            links.url(a, p),
            format!("https://clinic.example/manage?token={token}")
        );
        assert_eq!(links.hash(a, p), token_hash(&token));
        assert_ne!(links.hash(a, p), token);
    }

    #[test]
    fn random_tokens_are_well_formed_and_distinct() {
        let (a, b) = (random_token(), random_token());
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(a, b);
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}!", &a[..42])));
        assert_eq!(
            with_token("https://x/y?a=1", "t"),
            "https://x/y?a=1&token=t"
        );
    }
}
