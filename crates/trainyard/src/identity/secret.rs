//! Secret strings and the random material they are made of.
//!
//! Secret access keys and session tokens are what an attacker wants from a log line or a
//! panic message, so they live in a type that cannot be printed: [`Secret`] has a redacting
//! `Debug`, no `Display` and no `Serialize`, and the only way to the text is the explicit
//! [`Secret::expose`]. New secrets come from the operating system's CSPRNG (`getrandom`),
//! never from a seeded generator.

use std::fmt;

/// A secret access key or session token. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text, for computing a signature or answering the client that owns it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Base32 alphabet of AWS access key ids (`ASIA` + 16 of these).
const KEY_ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Base64 alphabet of secret access keys and session tokens.
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The operating system refused to hand out random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(#[from] getrandom::Error);

/// `len` characters drawn uniformly from `alphabet`, whose length must be a power of two
/// (so masking a random byte is unbiased).
fn random_string(alphabet: &[u8], len: usize) -> Result<String, RandomError> {
    debug_assert!(alphabet.len().is_power_of_two() && alphabet.len() <= 256);
    let mask = alphabet.len() - 1;
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes)?;
    Ok(bytes
        .into_iter()
        .map(|b| char::from(alphabet[usize::from(b) & mask]))
        .collect())
}

/// A new temporary access key id: `ASIA` and 16 base32 characters (80 random bits).
pub fn new_session_key_id() -> Result<String, RandomError> {
    Ok(format!("ASIA{}", random_string(KEY_ID_ALPHABET, 16)?))
}

/// A new secret access key: 40 base64 characters (240 random bits).
pub fn new_secret_key() -> Result<Secret, RandomError> {
    random_string(SECRET_ALPHABET, 40).map(Secret)
}

/// A new session token: 128 base64 characters (768 random bits).
pub fn new_session_token() -> Result<Secret, RandomError> {
    random_string(SECRET_ALPHABET, 128).map(Secret)
}

/// A stable identifier derived from `seed`, as AWS shows for users (`AIDA…`) and roles
/// (`AROA…`): `prefix` and 17 base32 characters of the SHA-256 of `seed`.
pub fn stable_unique_id(prefix: &str, seed: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| char::from(KEY_ID_ALPHABET[usize::from(*b) & 31]))
        .collect();
    format!("{prefix}{tail}")
}

/// The SHA-256 of `text`, hex-encoded.
pub fn sha256_hex(text: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn generated_material_has_the_aws_shapes_and_differs_each_time() {
        let id = new_session_key_id().unwrap();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("ASIA"));
        assert!(id.bytes().all(|b| KEY_ID_ALPHABET.contains(&b)));
        let (a, b) = (new_secret_key().unwrap(), new_secret_key().unwrap());
        assert_eq!(a.expose().len(), 40);
        assert_ne!(a, b);
        assert_eq!(new_session_token().unwrap().expose().len(), 128);
    }

    #[test]
    fn unique_ids_are_stable_and_distinct() {
        let a = stable_unique_id("AIDA", "arn:aws:iam::111122223333:user/a");
        assert_eq!(
            a,
            stable_unique_id("AIDA", "arn:aws:iam::111122223333:user/a")
        );
        assert_ne!(
            a,
            stable_unique_id("AIDA", "arn:aws:iam::111122223333:user/b")
        );
        assert_eq!(a.len(), 21);
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
