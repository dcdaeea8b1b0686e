//! HS256 JWTs: iss `medledger`, audience checked, `alg: none` and foreign keys refused.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use medledger_application::ports::{AccessClaims, RefreshClaims, SigningError, TokenError, TokenService};
use medledger_domain::identity::role::Roles;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ISSUER: &str = "medledger";
pub const AUDIENCE: &str = "medledger";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: Uuid,
    /// `access` or `refresh`: a refresh token is never accepted as an access token.
    typ: String,
    sid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roles: Option<Roles>,
    /// The history position the token was issued at (access tokens; 0 when absent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pos: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

pub struct JwtService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl JwtService {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation, access_ttl, refresh_ttl }
    }

    fn sign(&self, claims: &Claims) -> Result<String, SigningError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| SigningError(e.into()))
    }

    fn check(&self, token: &str, typ: &str) -> Result<Claims, TokenError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        if data.claims.typ != typ {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }

    /// `access`: the roles and history position an access token carries.
    fn claims(&self, sub: i64, typ: &str, sid: Uuid, jti: Uuid, exp: DateTime<Utc>, access: Option<(Roles, i64)>) -> Claims {
        let (roles, pos) = access.map_or((None, 0), |(roles, pos)| (Some(roles), pos));
        Claims {
            sub: sub.to_string(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            exp: exp.timestamp(),
            iat: Utc::now().timestamp(),
            jti,
            typ: typ.into(),
            sid,
            roles,
            pos,
        }
    }
}

impl TokenService for JwtService {
    fn issue_access(&self, c: &AccessClaims) -> Result<String, SigningError> {
        let exp = Utc::now() + self.access_ttl;
        self.sign(&self.claims(c.user_id, "access", c.session_id, Uuid::new_v4(), exp, Some((c.roles.clone(), c.position))))
    }

    fn issue_refresh(&self, c: &RefreshClaims, expires_at: DateTime<Utc>) -> Result<String, SigningError> {
        self.sign(&self.claims(c.user_id, "refresh", c.session_id, c.token_id, expires_at, None))
    }

    fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let c = self.check(token, "access")?;
        Ok(AccessClaims {
            user_id: c.sub.parse().map_err(|_| TokenError::Invalid)?,
            roles: c.roles.unwrap_or_default(),
            session_id: c.sid,
            position: c.pos,
        })
    }

    fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        let c = self.check(token, "refresh")?;
        Ok(RefreshClaims { user_id: c.sub.parse().map_err(|_| TokenError::Invalid)?, session_id: c.sid, token_id: c.jti })
    }

    fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use medledger_domain::identity::role::Role;

    fn svc(secret: &[u8]) -> JwtService {
        JwtService::new(secret, Duration::minutes(15), Duration::days(7))
    }

    fn access() -> AccessClaims {
        AccessClaims { user_id: 5, roles: Roles::new([Role::Admin]), session_id: Uuid::from_u128(9), position: 42 }
    }

    #[test]
    fn access_token_round_trips() {
        let s = svc(b"k1");
        let token = s.issue_access(&access()).unwrap();
        assert_eq!(s.verify_access(&token).unwrap(), access());
    }

    #[test]
    fn foreign_key_and_wrong_type_are_refused() {
        let token = svc(b"k1").issue_access(&access()).unwrap();
        assert_eq!(svc(b"k2").verify_access(&token), Err(TokenError::Invalid));
        assert_eq!(svc(b"k1").verify_refresh(&token).unwrap_err(), TokenError::Invalid);
    }

    #[test]
    fn alg_none_is_refused() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let exp = Utc::now().timestamp() + 600;
        let body = b64.encode(format!(
            r#"{{"sub":"5","iss":"medledger","aud":"medledger","exp":{exp},"iat":0,"jti":"{}","typ":"access","sid":"{}","roles":["admin"]}}"#,
            Uuid::nil(),
            Uuid::nil()
        ));
        assert_eq!(svc(b"k1").verify_access(&format!("{header}.{body}.")), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_token_is_reported_as_expired() {
        let s = JwtService::new(b"k", Duration::seconds(-60), Duration::days(1));
        let token = s.issue_access(&access()).unwrap();
        assert_eq!(s.verify_access(&token), Err(TokenError::Expired));
    }
}
