//! Access tokens: HS256 JWTs with `iss`, `aud`, `exp`, `iat`, `jti`, `sub`, `role` and
//! `typ = "access"`; the algorithm is fixed, so `alg=none` or any other algorithm fails.
//! Refresh tokens: 32 random bytes (URL-safe hex) for the client, SHA-256 in the database.

use crate::domain::rejection::AuthFailure;
use crate::domain::{Role, UserId};
use crate::service::ports::{AccessClaims, IssuedAccessToken, TokenIssuer};
use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

const TOKEN_TYPE: &str = "access";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iss: String,
    aud: String,
    exp: i64,
    iat: i64,
    /// `iat` in milliseconds: a password reset revokes the tokens issued before it, and
    /// a login in the same second must not count as one of them. Tokens without it
    /// count from the start of their `iat` second.
    #[serde(default)]
    iat_ms: Option<i64>,
    jti: String,
    typ: String,
}

pub struct JwtIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl JwtIssuer {
    pub fn new(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            access_ttl,
            refresh_ttl,
        }
    }
}

impl TokenIssuer for JwtIssuer {
    fn issue_access(
        &self,
        user_id: UserId,
        role: Role,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IssuedAccessToken> {
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.as_str().to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            iat_ms: Some(now.timestamp_millis()),
            exp: now.timestamp() + i64::try_from(self.access_ttl.as_secs())?,
            jti: Uuid::new_v4().to_string(),
            typ: TOKEN_TYPE.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedAccessToken {
            token,
            expires_in: self.access_ttl,
        })
    }

    fn verify_access(&self, token: &str) -> Result<AccessClaims, AuthFailure> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthFailure::Expired,
                _ => AuthFailure::Invalid,
            })?;
        let c = data.claims;
        if c.typ != TOKEN_TYPE {
            return Err(AuthFailure::NotAccessToken);
        }
        Ok(AccessClaims {
            user_id: UserId(c.sub.parse().map_err(|_| AuthFailure::Invalid)?),
            role: c.role.parse().map_err(|_| AuthFailure::Invalid)?,
            token_id: c.jti.parse().map_err(|_| AuthFailure::Invalid)?,
            issued_at: Utc
                .timestamp_millis_opt(c.iat_ms.unwrap_or(c.iat.saturating_mul(1000)))
                .single()
                .ok_or(AuthFailure::Invalid)?,
            expires_at: Utc
                .timestamp_opt(c.exp, 0)
                .single()
                .ok_or(AuthFailure::Invalid)?,
        })
    }

    fn new_refresh_token(&self) -> (String, String) {
        let bytes: [u8; 32] = rand::random();
        let secret = hex::encode(bytes);
        let hash = self.hash_refresh_token(&secret);
        (secret, hash)
    }

    fn hash_refresh_token(&self, secret: &str) -> String {
        hex::encode(Sha256::digest(secret.as_bytes()))
    }

    fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    fn access_ttl(&self) -> Duration {
        self.access_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> JwtIssuer {
        JwtIssuer::new(
            b"0123456789abcdef0123456789abcdef",
            "medbook",
            "medbook-api",
            Duration::from_secs(900),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn round_trip() {
        let i = issuer();
        let id = UserId(Uuid::new_v4());
        let t = i.issue_access(id, Role::Admin, Utc::now()).unwrap();
        let c = i.verify_access(&t.token).unwrap();
        assert_eq!(c.user_id, id);
        assert_eq!(c.role, Role::Admin);
    }

    #[test]
    fn rejects_expired_foreign_and_unsigned_tokens() {
        let i = issuer();
        let id = UserId(Uuid::new_v4());
        let old = i
            .issue_access(id, Role::Patient, Utc::now() - chrono::Duration::hours(1))
            .unwrap();
        assert_eq!(
            i.verify_access(&old.token).unwrap_err(),
            AuthFailure::Expired
        );

        let other = JwtIssuer::new(
            b"another-secret-another-secret-xx",
            "medbook",
            "medbook-api",
            Duration::from_secs(900),
            Duration::from_secs(3600),
        );
        let foreign = other.issue_access(id, Role::Admin, Utc::now()).unwrap();
        assert!(i.verify_access(&foreign.token).is_err());

        let wrong_aud = JwtIssuer::new(
            b"0123456789abcdef0123456789abcdef",
            "medbook",
            "someone-else",
            Duration::from_secs(900),
            Duration::from_secs(3600),
        );
        let t = wrong_aud.issue_access(id, Role::Admin, Utc::now()).unwrap();
        assert!(i.verify_access(&t.token).is_err());

        let (refresh, _) = i.new_refresh_token();
        assert!(i.verify_access(&refresh).is_err());
    }
}
