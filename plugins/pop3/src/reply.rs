//! Status lines, with the extended response codes of RFC 2449 section 8
//! and RFC 3206.

/// An extended response code: a machine-readable reason in brackets
/// after `-ERR`, so a client can tell "try later" from "wrong password".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The credentials were refused (RFC 3206).
    Auth,
    /// Another session holds the maildrop (RFC 2449).
    InUse,
    /// A passing failure; the same command may work later (RFC 3206).
    SysTemp,
    /// A failure that retrying will not fix (RFC 3206).
    SysPerm,
}

impl Code {
    fn text(self) -> &'static str {
        match self {
            Code::Auth => "AUTH",
            Code::InUse => "IN-USE",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
        }
    }
}

/// `+OK text` with its CRLF; a bare `+OK` for empty text.
pub fn ok(text: &str) -> String {
    if text.is_empty() {
        return "+OK\r\n".to_owned();
    }
    format!("+OK {text}\r\n")
}

/// `-ERR text`, or `-ERR [CODE] text`, with its CRLF.
pub fn err(code: Option<Code>, text: &str) -> String {
    match code {
        Some(code) => format!("-ERR [{}] {text}\r\n", code.text()),
        None => format!("-ERR {text}\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_go_in_brackets() {
        assert_eq!(ok("done"), "+OK done\r\n");
        assert_eq!(ok(""), "+OK\r\n");
        assert_eq!(err(None, "no"), "-ERR no\r\n");
        assert_eq!(err(Some(Code::InUse), "busy"), "-ERR [IN-USE] busy\r\n");
        assert_eq!(err(Some(Code::SysTemp), "x"), "-ERR [SYS/TEMP] x\r\n");
    }
}
