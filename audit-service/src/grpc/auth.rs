//! Who may call what. Two bearer tokens, two roles: the append token (held by the
//! writer, booking-service's audit relay) may only add records; the read token (held by
//! readers, booking-service's `GET /api/v1/audit`) may only read them. Checkpoints and
//! proofs carry hashes and sizes, no record contents, so either token may fetch them
//! (the writer's readiness check asks for the latest checkpoint).
//!
//! A missing or unknown token is UNAUTHENTICATED; a known token calling a method its
//! role may not call is PERMISSION_DENIED. Tokens are compared by their SHA-256
//! digests, in constant time, against both configured tokens every time, so neither
//! the length nor the role of a guess shows in the answer's timing.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::Status;

/// What a credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Append,
    Read,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Append => "append",
            Role::Read => "read",
        }
    }
}

/// Which roles may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Append: the append token only.
    Append,
    /// Query: the read token only.
    Read,
    /// Checkpoints and proofs: either token.
    Either,
}

impl Access {
    fn allows(self, role: Role) -> bool {
        matches!(
            (self, role),
            (Access::Append, Role::Append) | (Access::Read, Role::Read) | (Access::Either, _)
        )
    }
}

type Digest32 = [u8; 32];

/// The configured tokens, as digests. With neither, the service requires none (the
/// dev profile without tokens: every call is allowed); with one only (which settings
/// refuse), the other role has no credential at all.
#[derive(Clone)]
pub struct Credentials {
    append: Option<Digest32>,
    read: Option<Digest32>,
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal digests, looking at every byte whatever the first difference.
fn same(a: &Digest32, b: &Digest32) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Credentials {
    pub fn new(append: Option<&SecretString>, read: Option<&SecretString>) -> Self {
        Self {
            append: append.map(|t| digest(t.expose_secret())),
            read: read.map(|t| digest(t.expose_secret())),
        }
    }

    /// Every call allowed: no tokens configured.
    pub fn open() -> Self {
        Self::new(None, None)
    }

    /// The caller's role, from `authorization: Bearer <token>`; `Ok(None)` when no
    /// tokens are configured.
    pub fn role(&self, metadata: &MetadataMap) -> Result<Option<Role>, Status> {
        if self.append.is_none() && self.read.is_none() {
            return Ok(None);
        }
        let presented = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
        let d = digest(presented.trim());
        // Both comparisons, always.
        let is_append = self.append.is_some_and(|a| same(&d, &a));
        let is_read = self.read.is_some_and(|r| same(&d, &r));
        match (is_append, is_read) {
            (true, _) => Ok(Some(Role::Append)),
            (false, true) => Ok(Some(Role::Read)),
            (false, false) => Err(Status::unauthenticated("invalid token")),
        }
    }

    /// Whether the caller may call `method`, which needs `access`.
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        method: &str,
        access: Access,
    ) -> Result<(), Status> {
        match self.role(metadata)? {
            Some(role) if !access.allows(role) => Err(Status::permission_denied(format!(
                "the {} token may not call {method}",
                role.name()
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn with(header: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(h) = header {
            m.insert("authorization", h.parse().unwrap());
        }
        m
    }

    fn creds() -> Credentials {
        Credentials::new(
            Some(&SecretString::from("append-secret")),
            Some(&SecretString::from("read-secret")),
        )
    }

    #[test]
    fn each_token_may_call_its_own_methods_only() {
        let c = creds();
        let append = with(Some("Bearer append-secret"));
        let read = with(Some("Bearer read-secret"));
        c.authorize(&append, "Append", Access::Append).unwrap();
        c.authorize(&append, "GetCheckpoint", Access::Either)
            .unwrap();
        c.authorize(&read, "Query", Access::Read).unwrap();
        c.authorize(&read, "GetInclusionProof", Access::Either)
            .unwrap();
        let e = c.authorize(&append, "Query", Access::Read).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert_eq!(e.message(), "the append token may not call Query");
        let e = c.authorize(&read, "Append", Access::Append).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(!e.message().contains("secret"), "{e:?}");
    }

    #[test]
    fn a_missing_or_unknown_token_is_unauthenticated() {
        let c = creds();
        for header in [
            None,
            Some("Bearer nope"),
            Some("Bearer "),
            Some("Basic read-secret"),
            Some("bearer read-secret"),
        ] {
            for access in [Access::Append, Access::Read, Access::Either] {
                let e = c.authorize(&with(header), "M", access).unwrap_err();
                assert_eq!(e.code(), Code::Unauthenticated, "{header:?}");
            }
        }
    }

    #[test]
    fn without_tokens_every_call_is_allowed() {
        let c = Credentials::open();
        c.authorize(&with(None), "Append", Access::Append).unwrap();
        c.authorize(&with(Some("Bearer x")), "Query", Access::Read)
            .unwrap();
    }

    #[test]
    fn with_one_token_only_the_other_role_is_closed() {
        // Settings refuse this configuration; the check still fails closed.
        let half = Credentials::new(Some(&SecretString::from("a")), None);
        half.authorize(&with(Some("Bearer a")), "Append", Access::Append)
            .unwrap();
        let e = half
            .authorize(&with(None), "Query", Access::Read)
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let e = half
            .authorize(&with(Some("Bearer a")), "Query", Access::Read)
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
}
