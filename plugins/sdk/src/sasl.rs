//! SASL mechanisms every mail protocol offers: PLAIN (RFC 4616) and the
//! LOGIN mechanism that Outlook and older clients still use.

use alloc::borrow::ToOwned;
use alloc::string::String;

use crate::base64;

/// The LOGIN mechanism's first challenge, `Username:` in base64. Outlook
/// insists on exactly this text.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";

/// The LOGIN mechanism's second challenge, `Password:` in base64.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// Credentials carried by one SASL exchange.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The identity to act as; empty when the client sent none.
    pub authzid: String,
    /// The identity whose password was given.
    pub authcid: String,
    pub password: String,
}

/// Why a SASL response could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`: it gave up on the exchange (RFC 4954 4).
    Cancelled,
    /// Not base64, not UTF-8, or not the mechanism's layout.
    Malformed,
}

/// Whether a client response line is the cancel marker `*`.
pub fn is_cancel(response: &str) -> bool {
    response.trim() == "*"
}

/// Decode a PLAIN response: base64 of `authzid NUL authcid NUL password`.
/// An empty response (`=` under SASL-IR) is malformed here; the caller
/// asks for the credentials with an empty challenge instead.
///
/// ```
/// use mailhost_sdk::sasl::decode_plain;
///
/// let creds = decode_plain("AGFsaWNlAHNlY3JldA==").unwrap();
/// assert_eq!(creds.authcid, "alice");
/// assert_eq!(creds.password, "secret");
/// ```
pub fn decode_plain(response: &str) -> Result<Credentials, SaslError> {
    if is_cancel(response) {
        return Err(SaslError::Cancelled);
    }

    let raw = base64::decode(response).ok_or(SaslError::Malformed)?;
    let text = String::from_utf8(raw).map_err(|_| SaslError::Malformed)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() {
        return Err(SaslError::Malformed);
    }

    Ok(Credentials {
        authzid: authzid.to_owned(),
        authcid: authcid.to_owned(),
        password: password.to_owned(),
    })
}

/// Decode one LOGIN response (the user name or the password).
///
/// ```
/// use mailhost_sdk::sasl::decode_login_step;
///
/// assert_eq!(decode_login_step("YWxpY2U=").unwrap(), "alice");
/// ```
pub fn decode_login_step(response: &str) -> Result<String, SaslError> {
    if is_cancel(response) {
        return Err(SaslError::Cancelled);
    }

    let raw = base64::decode(response).ok_or(SaslError::Malformed)?;
    String::from_utf8(raw).map_err(|_| SaslError::Malformed)
}
