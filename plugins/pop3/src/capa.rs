//! The CAPA response (RFC 2449 section 5).

/// What the session may offer right now; CAPA differs by state and by
/// TLS, so it is computed for each call.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// Still in the AUTHORIZATION state.
    pub before_login: bool,
    /// The host allows plaintext passwords on this session now.
    pub plaintext_auth: bool,
    /// STLS would work: TLS is configured and not yet active.
    pub stls: bool,
}

/// The capability lines, without terminators.
pub fn capabilities(offer: Offer) -> Vec<&'static str> {
    let mut lines = vec!["TOP", "UIDL"];

    // Login mechanisms only where a login could succeed; offering them
    // on a plaintext session that refuses passwords invites clients to
    // send the password in the clear anyway.
    if offer.before_login && offer.plaintext_auth {
        lines.push("USER");
        lines.push("SASL PLAIN");
    }
    if offer.before_login && offer.stls {
        lines.push("STLS");
    }

    lines.extend([
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "IMPLEMENTATION mailhost",
    ]);
    lines
}

/// The whole multi-line CAPA response.
pub fn response(offer: Offer) -> String {
    let mut out = String::from("+OK capability list follows\r\n");
    for line in capabilities(offer) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_offer_before_login() {
        let offer = Offer {
            before_login: true,
            plaintext_auth: true,
            stls: true,
        };
        let lines = capabilities(offer);
        for want in [
            "TOP",
            "UIDL",
            "USER",
            "SASL PLAIN",
            "STLS",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
        ] {
            assert!(lines.contains(&want), "{want} missing from {lines:?}");
        }
        assert!(lines.iter().any(|line| line.starts_with("IMPLEMENTATION ")));
    }

    #[test]
    fn no_login_mechanisms_when_plaintext_is_refused() {
        let offer = Offer {
            before_login: true,
            plaintext_auth: false,
            stls: true,
        };
        let lines = capabilities(offer);
        assert!(!lines.contains(&"USER"));
        assert!(!lines.iter().any(|line| line.starts_with("SASL")));
        assert!(lines.contains(&"STLS"));
    }

    #[test]
    fn nothing_to_log_in_with_after_login() {
        let offer = Offer {
            before_login: false,
            plaintext_auth: true,
            stls: true,
        };
        let lines = capabilities(offer);
        assert!(!lines.contains(&"USER"));
        assert!(!lines.contains(&"STLS"));
    }

    #[test]
    fn response_is_terminated() {
        let offer = Offer {
            before_login: false,
            plaintext_auth: false,
            stls: false,
        };
        let text = response(offer);
        assert!(text.starts_with("+OK "));
        assert!(text.ends_with("\r\nIMPLEMENTATION mailhost\r\n.\r\n"));
    }
}
