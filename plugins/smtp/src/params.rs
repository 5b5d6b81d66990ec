//! ESMTP parameters after the path of MAIL and RCPT (RFC 5321 4.1.2):
//! `SIZE` (RFC 1870), `BODY` (RFC 6152), `SMTPUTF8` (RFC 6531) and
//! `AUTH` (RFC 4954 5) on MAIL; none on RCPT.

/// Most digits a `SIZE=` value may have; more cannot fit a u64 anyway.
const MAX_SIZE_DIGITS: usize = 20;

/// What MAIL's parameters asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MailParams {
    /// The client's size estimate, in bytes.
    pub size: Option<u64>,
    /// `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// `SMTPUTF8`: UTF-8 addresses and headers.
    pub smtputf8: bool,
}

/// Why the parameters were refused, with the reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// A keyword this server does not offer: 555 (RFC 5321 4.1.1.11).
    Unsupported(String),
    /// A known keyword with a bad or repeated value: 501.
    Invalid(String),
}

/// Parse MAIL's parameters from `rest`, the text after the path.
/// `auth_offered` says whether AUTH was advertised, which makes `AUTH=`
/// a parameter this server knows.
pub fn parse_mail(
    rest: &str,
    auth_offered: bool,
) -> Result<MailParams, ParamError> {
    let mut params = MailParams::default();
    let mut seen: Vec<String> = Vec::new();

    for (keyword, value) in split(rest)? {
        let upper = keyword.to_ascii_uppercase();
        if seen.contains(&upper) {
            return Err(ParamError::Invalid(format!("duplicate {upper}")));
        }
        seen.push(upper.clone());

        match (upper.as_str(), value) {
            ("SIZE", Some(value)) => {
                if value.is_empty()
                    || value.len() > MAX_SIZE_DIGITS
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(ParamError::Invalid("SIZE=<bytes>".into()));
                }
                // Twenty digits can pass u64::MAX: treat it as huge.
                params.size = Some(value.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(value)) => {
                if value.eq_ignore_ascii_case("8BITMIME") {
                    params.eight_bit = true;
                } else if !value.eq_ignore_ascii_case("7BIT") {
                    // BINARYMIME is not offered.
                    return Err(ParamError::Unsupported(format!(
                        "BODY={value}"
                    )));
                }
            }
            ("SMTPUTF8", None) => params.smtputf8 = true,
            // The authorisation identity of a relayed message: the host
            // knows who logged in, so the value is not needed.
            ("AUTH", Some(_)) if auth_offered => {}
            ("SIZE" | "BODY" | "SMTPUTF8", _) => {
                return Err(ParamError::Invalid(format!("bad {upper} syntax")));
            }
            _ => return Err(ParamError::Unsupported(upper)),
        }
    }
    Ok(params)
}

/// Refuse any parameter on RCPT: none is offered (DSN is not).
pub fn parse_rcpt(rest: &str) -> Result<(), ParamError> {
    match split(rest)?.into_iter().next() {
        Some((keyword, _)) => {
            Err(ParamError::Unsupported(keyword.to_ascii_uppercase()))
        }
        None => Ok(()),
    }
}

/// Split `rest` into `keyword[=value]` pairs, checking the keyword and
/// value syntax of RFC 5321 4.1.2.
fn split(rest: &str) -> Result<Vec<(&str, Option<&str>)>, ParamError> {
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(ParamError::Invalid(
            "space expected after the path".into(),
        ));
    }

    let mut out = Vec::new();
    for item in rest.split(' ').filter(|item| !item.is_empty()) {
        let (keyword, value) = match item.split_once('=') {
            Some((keyword, value)) => (keyword, Some(value)),
            None => (item, None),
        };
        let keyword_ok = keyword
            .starts_with(|c: char| c.is_ascii_alphanumeric())
            && keyword
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        let value_ok = value.is_none_or(|value| {
            !value.is_empty()
                && value.chars().all(|c| !c.is_ascii_control() && c != '=')
        });
        if !keyword_ok || !value_ok {
            return Err(ParamError::Invalid(format!("bad parameter {item}")));
        }
        out.push((keyword, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_parameters() {
        let params =
            parse_mail(" SIZE=1000 body=8bitmime SMTPUTF8", false).unwrap();
        assert_eq!(params.size, Some(1000));
        assert!(params.eight_bit);
        assert!(params.smtputf8);
        assert_eq!(parse_mail("", false), Ok(MailParams::default()));
    }

    #[test]
    fn huge_size_saturates() {
        let params = parse_mail(" SIZE=99999999999999999999", false).unwrap();
        assert_eq!(params.size, Some(u64::MAX));
        assert!(parse_mail(" SIZE=999999999999999999999", false).is_err());
    }

    #[test]
    fn unknown_parameters_are_unsupported() {
        assert_eq!(
            parse_mail(" RET=HDRS", false),
            Err(ParamError::Unsupported("RET".into()))
        );
        assert_eq!(
            parse_mail(" BODY=BINARYMIME", false),
            Err(ParamError::Unsupported("BODY=BINARYMIME".into()))
        );
        assert!(matches!(
            parse_mail(" AUTH=<>", false),
            Err(ParamError::Unsupported(_))
        ));
        assert!(parse_mail(" AUTH=<>", true).is_ok());
        assert!(matches!(
            parse_rcpt(" NOTIFY=NEVER"),
            Err(ParamError::Unsupported(_))
        ));
        assert_eq!(parse_rcpt(""), Ok(()));
    }

    #[test]
    fn malformed_parameters_are_invalid() {
        for bad in [
            " SIZE=",
            " SIZE=12a",
            " SIZE",
            " SMTPUTF8=yes",
            "SIZE=1",
            " SIZE=1 SIZE=2",
            " =x",
            " A=b=c",
        ] {
            assert!(
                matches!(parse_mail(bad, false), Err(ParamError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
