//! Argon2id password hashing.

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use medledger_application::ports::{HashError, PasswordHasher};
use medledger_domain::values::PasswordHash;

pub struct Argon2Hasher {
    params: Params,
}

impl Argon2Hasher {
    /// OWASP's recommended argon2id parameters (19 MiB, 2 passes).
    pub fn recommended() -> Self {
        Self { params: Params::default() }
    }

    /// Cheap parameters for test suites and benchmarks that create many users.
    /// Selected by `MEDLEDGER_FAST_PASSWORD_HASH=1`; never the default.
    pub fn fast_for_tests() -> Self {
        let params = Params::new(1024, 1, 1, None).unwrap_or_default();
        Self { params }
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }
}

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &str) -> Result<PasswordHash, HashError> {
        self.argon().hash_password(password.as_bytes()).map(|h| PasswordHash::new(h.to_string())).map_err(|e| HashError(e.into()))
    }

    fn verify(&self, password: &str, hash: &PasswordHash) -> bool {
        // Verification reads the parameters from the stored hash, so hashes made with
        // other parameters still verify.
        self.argon().verify_password(password.as_bytes(), hash.as_str()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let h = Argon2Hasher::fast_for_tests();
        let a = h.hash("correct horse").unwrap();
        let b = h.hash("correct horse").unwrap();
        assert!(a.as_str().starts_with("$argon2id$"));
        assert_ne!(a, b, "salt must differ");
        assert!(h.verify("correct horse", &a));
        assert!(!h.verify("wrong horse", &a));
        assert!(!h.verify("x", &PasswordHash::new("not a phc string".into())));
    }
}
