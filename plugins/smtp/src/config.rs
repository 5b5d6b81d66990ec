//! The listener settings this plugin reads, with their defaults.

/// Recipients per message unless `max-recipients` says otherwise. RFC
/// 5321 4.5.3.1.8 asks servers to take at least 100.
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;

/// The most recipients the host's `delivery.begin` takes; a larger
/// `max-recipients` is cut to it.
pub const HOST_MAX_RECIPIENTS: usize = 1000;

/// Refused commands per session before the server hangs up, unless
/// `max-errors` says otherwise.
pub const DEFAULT_MAX_ERRORS: u32 = 10;

/// Which service the listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: mail for local domains from anyone, no AUTH, no relay.
    Reception,
    /// Ports 587/465: AUTH before MAIL, sender owned by the account.
    Submission,
    /// RFC 2033, for an MTA handing mail over: LHLO and one reply per
    /// recipient after the data.
    Lmtp,
}

/// Settings of one session, read once at its start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `mode`: `reception` (default), `submission` or `lmtp`.
    pub mode: Mode,
    /// `hostname`: the name in the greeting and in `Received:`; default
    /// the local address as an address literal.
    pub hostname: String,
    /// `starttls`: `true` to offer STARTTLS, for listeners with
    /// `tls = "starttls"`; default `false`.
    pub starttls: bool,
    /// `max-recipients`: recipients per message; default 100, at most
    /// 1000.
    pub max_recipients: usize,
    /// `max-errors`: refused commands before `421`; default 10.
    pub max_errors: u32,
    /// `postmaster`: the address `RCPT TO:<Postmaster>` delivers to;
    /// without it such a recipient is refused.
    pub postmaster: Option<String>,
}

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl Config {
    /// Read the settings through `get`; `local_address` supplies the
    /// default host name.
    pub fn from_settings(
        get: impl Fn(&str) -> Option<String>,
        local_address: &str,
    ) -> Result<Config, ConfigError> {
        let mode = match get("mode").as_deref() {
            None | Some("reception") => Mode::Reception,
            Some("submission") => Mode::Submission,
            Some("lmtp") => Mode::Lmtp,
            Some(other) => {
                return Err(ConfigError(format!(
                    "setting `mode` is `{other}`; expected reception, \
                     submission or lmtp"
                )));
            }
        };

        let hostname = match get("hostname") {
            Some(name) if valid_hostname(&name) => name,
            Some(name) => {
                return Err(ConfigError(format!(
                    "setting `hostname` is `{name}`; expected a domain name"
                )));
            }
            None if local_address.contains(':') => {
                format!("[IPv6:{local_address}]")
            }
            None => format!("[{local_address}]"),
        };

        let starttls = match get("starttls").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "setting `starttls` is `{other}`; expected true or false"
                )));
            }
        };

        let max_recipients: usize =
            number(&get, "max-recipients", DEFAULT_MAX_RECIPIENTS)?;
        let max_errors = number(&get, "max-errors", DEFAULT_MAX_ERRORS)?;
        if max_recipients == 0 || max_errors == 0 {
            return Err(ConfigError(
                "settings `max-recipients` and `max-errors` must be above 0"
                    .into(),
            ));
        }

        Ok(Config {
            mode,
            hostname,
            starttls,
            max_recipients: max_recipients.min(HOST_MAX_RECIPIENTS),
            max_errors,
            postmaster: get("postmaster"),
        })
    }
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: T,
) -> Result<T, ConfigError> {
    match get(key) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            ConfigError(format!(
                "setting `{key}` is `{text}`; expected a number"
            ))
        }),
    }
}

/// Letters, digits, `-` and `.`: the name goes into every reply and
/// trace header, so nothing else is let through.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_settings(
            |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
            "127.0.0.1",
        )
    }

    #[test]
    fn defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(config.mode, Mode::Reception);
        assert_eq!(config.hostname, "[127.0.0.1]");
        assert!(!config.starttls);
        assert_eq!(config.max_recipients, DEFAULT_MAX_RECIPIENTS);
        assert_eq!(config.max_errors, DEFAULT_MAX_ERRORS);
    }

    #[test]
    fn values_and_clamping() {
        let config = config(&[
            ("mode", "lmtp"),
            ("hostname", "mx.example.org"),
            ("starttls", "true"),
            ("max-recipients", "5000"),
            ("max-errors", "3"),
        ])
        .unwrap();
        assert_eq!(config.mode, Mode::Lmtp);
        assert!(config.starttls);
        assert_eq!(config.max_recipients, HOST_MAX_RECIPIENTS);
        assert_eq!(config.max_errors, 3);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(config(&[("mode", "relay")]).is_err());
        assert!(config(&[("hostname", "a b\r\n")]).is_err());
        assert!(config(&[("max-errors", "ten")]).is_err());
        assert!(config(&[("max-recipients", "0")]).is_err());
        assert!(config(&[("starttls", "yes")]).is_err());
    }
}
