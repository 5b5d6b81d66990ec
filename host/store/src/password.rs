//! Password hashes in Dovecot's `{SCHEME}hash` notation.
//!
//! New passwords get `{ARGON2ID}` (argon2 0.5 defaults: 19 MiB, two
//! passes, one lane). `{SHA512-CRYPT}` (`$6$`) and `{BLF-CRYPT}`
//! (`$2y$`, `$2b$`, `$2a$`) are verified for accounts migrated from
//! Dovecot. Any other scheme is refused when the users file is loaded.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use rand::RngCore;

/// The longest password we hash, in bytes; longer ones fail without
/// being hashed, so a client cannot make us burn CPU on megabytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A scheme we can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `{ARGON2ID}$argon2id$...`, the default for new passwords.
    Argon2id,
    /// `{SHA512-CRYPT}$6$...`.
    Sha512Crypt,
    /// `{BLF-CRYPT}$2y$...`.
    BlfCrypt,
}

/// A stored hash, checked when the users file was read.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredHash {
    scheme: Scheme,
    hash: String,
}

impl std::fmt::Debug for StoredHash {
    // Never print the hash, not even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredHash({:?}, ..)", self.scheme)
    }
}

impl StoredHash {
    /// Parse `{SCHEME}hash`. Errors name the scheme, never the hash.
    pub fn parse(field: &str) -> Result<StoredHash, String> {
        let rest = field
            .strip_prefix('{')
            .ok_or("password field must start with `{SCHEME}`")?;
        let (scheme, hash) = rest
            .split_once('}')
            .ok_or("password field must start with `{SCHEME}`")?;
        let scheme = match scheme.to_ascii_uppercase().as_str() {
            "ARGON2ID" => Scheme::Argon2id,
            "SHA512-CRYPT" => Scheme::Sha512Crypt,
            "BLF-CRYPT" => Scheme::BlfCrypt,
            _ => {
                let shown: String = scheme.chars().take(32).collect();
                return Err(format!("unknown password scheme `{{{shown}}}`"));
            }
        };

        let well_formed = match scheme {
            Scheme::Argon2id => {
                hash.starts_with("$argon2id$")
                    && PasswordHash::new(hash)
                        .is_ok_and(|h| h.salt.is_some() && h.hash.is_some())
            }
            Scheme::Sha512Crypt => hash.starts_with("$6$") && hash.len() > 20,
            Scheme::BlfCrypt => {
                ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p))
                    && hash.len() == 60
            }
        };
        if !well_formed {
            return Err(format!("malformed {scheme:?} hash"));
        }
        Ok(StoredHash {
            scheme,
            hash: hash.to_owned(),
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether `password` matches.
    pub fn verify(&self, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match self.scheme {
            Scheme::Argon2id => PasswordHash::new(&self.hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            }),
            Scheme::Sha512Crypt => {
                sha_crypt::sha512_check(password, &self.hash).is_ok()
            }
            Scheme::BlfCrypt => {
                bcrypt::verify(password, &self.hash).unwrap_or(false)
            }
        }
    }

    /// The `{SCHEME}hash` field.
    pub fn to_field(&self) -> String {
        let name = match self.scheme {
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::BlfCrypt => "BLF-CRYPT",
        };
        format!("{{{name}}}{}", self.hash)
    }
}

/// Hash a new password: `{ARGON2ID}$argon2id$v=19$...`.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(format!("password must be 1 to {MAX_PASSWORD_LEN} bytes"));
    }
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?;
    Ok(format!("{{ARGON2ID}}{hash}"))
}

/// Spend about the time of a real check, for an unknown user, so the
/// answer's timing does not tell which accounts exist.
pub fn dummy_verify(password: &str) {
    static DUMMY: OnceLock<Option<StoredHash>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        let field = hash_password("mailhost-dummy-password").ok()?;
        StoredHash::parse(&field).ok()
    });
    if let Some(d) = dummy {
        let _ = d.verify(password);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let field = hash_password("s3cret").unwrap();
        assert!(field.starts_with("{ARGON2ID}$argon2id$v=19$"));
        let h = StoredHash::parse(&field).unwrap();
        assert!(h.verify("s3cret"));
        assert!(!h.verify("s3cret "));
        assert!(!format!("{h:?}").contains("argon2id$"));
    }

    #[test]
    fn migrated_schemes_verify() {
        let sha = sha_crypt::sha512_simple(
            "hunter2",
            &sha_crypt::Sha512Params::new(5000).unwrap(),
        )
        .unwrap();
        let h = StoredHash::parse(&format!("{{SHA512-CRYPT}}{sha}")).unwrap();
        assert!(h.verify("hunter2") && !h.verify("hunter3"));

        let blf = bcrypt::hash_with_result("hunter2", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let h = StoredHash::parse(&format!("{{blf-crypt}}{blf}")).unwrap();
        assert!(h.verify("hunter2") && !h.verify("hunter3"));
    }

    #[test]
    fn unknown_and_malformed_schemes_refused_without_the_hash() {
        let err = StoredHash::parse("{PLAIN}topsecret").unwrap_err();
        assert!(err.contains("{PLAIN}") && !err.contains("topsecret"));
        let err = StoredHash::parse("{MD5-CRYPT}$1$abc$def").unwrap_err();
        assert!(!err.contains("$1$abc"), "{err}");
        assert!(StoredHash::parse("$6$nobrace").is_err());
        let err = StoredHash::parse("{ARGON2ID}$argon2id$garbage").unwrap_err();
        assert!(!err.contains("garbage"), "{err}");
    }

    #[test]
    fn oversized_password_is_not_hashed() {
        let field = hash_password("x").unwrap();
        let h = StoredHash::parse(&field).unwrap();
        assert!(!h.verify(&"x".repeat(MAX_PASSWORD_LEN + 1)));
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }
}
