//! Parsing one POP3 command line (RFC 1939 section 3, RFC 2449, RFC 5034).
//!
//! Keywords are case-insensitive. Arguments are split on spaces, except
//! PASS, whose argument is the rest of the line as sent: RFC 1939 lets a
//! password contain spaces.

/// A message number or a line count as the client wrote it. Numbers too
/// large for a `u64` saturate, so they simply name no message.
pub type Number = u64;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    /// `AUTH` alone asks for the mechanism list (a pre-RFC 5034 form
    /// that Outlook still sends); otherwise a mechanism and maybe an
    /// initial response.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    Apop,
    Stls,
    Capa,
    Quit,
    Stat,
    List(Option<Number>),
    Retr(Number),
    Dele(Number),
    Noop,
    Rset,
    Top(Number, Number),
    Uidl(Option<Number>),
}

/// Why a line is not a command we can run. The text goes to the client
/// after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// No such keyword.
    Unknown,
    /// A known keyword with the wrong arguments; carries the syntax.
    Syntax(&'static str),
}

impl ParseError {
    /// The reply text, without `-ERR `.
    pub fn reply(&self) -> String {
        match self {
            ParseError::Unknown => "unknown command".to_owned(),
            ParseError::Syntax(usage) => format!("syntax: {usage}"),
        }
    }
}

/// Parse `line` (without its line terminator).
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let (keyword, rest) = match line.split_once(' ') {
        Some((keyword, rest)) => (keyword, Some(rest)),
        None => (line, None),
    };
    let keyword = keyword.to_ascii_uppercase();

    // PASS keeps its argument byte for byte; every other command splits.
    if keyword == "PASS" {
        return match rest {
            Some(password) if !password.is_empty() => {
                Ok(Command::Pass(password.to_owned()))
            }
            _ => Err(ParseError::Syntax("PASS password")),
        };
    }
    let args: Vec<&str> = rest
        .map(|rest| rest.split(' ').filter(|arg| !arg.is_empty()).collect())
        .unwrap_or_default();

    match keyword.as_str() {
        "USER" => match args[..] {
            [name] => Ok(Command::User(name.to_owned())),
            _ => Err(ParseError::Syntax("USER name")),
        },
        "AUTH" => match args[..] {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mechanism] => Ok(Command::Auth {
                mechanism: Some(mechanism.to_ascii_uppercase()),
                initial: None,
            }),
            [mechanism, initial] => Ok(Command::Auth {
                mechanism: Some(mechanism.to_ascii_uppercase()),
                initial: Some(initial.to_owned()),
            }),
            _ => Err(ParseError::Syntax("AUTH mechanism [initial-response]")),
        },
        "APOP" => Ok(Command::Apop),
        "STLS" => no_args(&args, Command::Stls, "STLS"),
        "CAPA" => no_args(&args, Command::Capa, "CAPA"),
        "QUIT" => no_args(&args, Command::Quit, "QUIT"),
        "STAT" => no_args(&args, Command::Stat, "STAT"),
        "NOOP" => no_args(&args, Command::Noop, "NOOP"),
        "RSET" => no_args(&args, Command::Rset, "RSET"),
        "LIST" => optional_number(&args, "LIST [msg]").map(Command::List),
        "UIDL" => optional_number(&args, "UIDL [msg]").map(Command::Uidl),
        "RETR" => one_number(&args, "RETR msg").map(Command::Retr),
        "DELE" => one_number(&args, "DELE msg").map(Command::Dele),
        "TOP" => match args[..] {
            [msg, lines] => match (number(msg), number(lines)) {
                (Some(msg), Some(lines)) => Ok(Command::Top(msg, lines)),
                _ => Err(ParseError::Syntax("TOP msg lines")),
            },
            _ => Err(ParseError::Syntax("TOP msg lines")),
        },
        _ => Err(ParseError::Unknown),
    }
}

fn no_args(
    args: &[&str],
    command: Command,
    usage: &'static str,
) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::Syntax(usage))
    }
}

fn optional_number(
    args: &[&str],
    usage: &'static str,
) -> Result<Option<Number>, ParseError> {
    match args {
        [] => Ok(None),
        [arg] => number(arg).map(Some).ok_or(ParseError::Syntax(usage)),
        _ => Err(ParseError::Syntax(usage)),
    }
}

fn one_number(
    args: &[&str],
    usage: &'static str,
) -> Result<Number, ParseError> {
    match args {
        [arg] => number(arg).ok_or(ParseError::Syntax(usage)),
        _ => Err(ParseError::Syntax(usage)),
    }
}

/// A decimal number of ASCII digits only: no sign, no spaces. Values past
/// `u64::MAX` saturate rather than fail, so `RETR 99999999999999999999`
/// is answered "no such message" like any other number out of range.
fn number(text: &str) -> Option<Number> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }

    let value = text.bytes().fold(0u64, |acc, digit| {
        acc.saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    });
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_ignore_case() {
        assert_eq!(parse("stat"), Ok(Command::Stat));
        assert_eq!(parse("Quit"), Ok(Command::Quit));
        assert_eq!(parse("rEtR 3"), Ok(Command::Retr(3)));
    }

    #[test]
    fn pass_keeps_spaces_in_the_password() {
        assert_eq!(
            parse("PASS  two  spaces "),
            Ok(Command::Pass(" two  spaces ".to_owned()))
        );
        assert_eq!(parse("PASS"), Err(ParseError::Syntax("PASS password")));
        assert_eq!(parse("PASS "), Err(ParseError::Syntax("PASS password")));
    }

    #[test]
    fn list_and_uidl_take_an_optional_number() {
        assert_eq!(parse("LIST"), Ok(Command::List(None)));
        assert_eq!(parse("LIST 2"), Ok(Command::List(Some(2))));
        assert_eq!(parse("UIDL 7"), Ok(Command::Uidl(Some(7))));
        assert!(matches!(parse("LIST 1 2"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn attack_signed_and_odd_numbers_are_syntax_errors() {
        for line in ["RETR -1", "RETR +1", "RETR 1x", "RETR 0x10", "RETR"] {
            assert!(
                matches!(parse(line), Err(ParseError::Syntax(_))),
                "{line}"
            );
        }
    }

    #[test]
    fn attack_huge_numbers_saturate() {
        assert_eq!(
            parse("RETR 99999999999999999999999"),
            Ok(Command::Retr(u64::MAX))
        );
        assert_eq!(
            parse("TOP 1 99999999999999999999"),
            Ok(Command::Top(1, u64::MAX))
        );
    }

    #[test]
    fn top_needs_two_numbers() {
        assert_eq!(parse("TOP 1 0"), Ok(Command::Top(1, 0)));
        assert!(matches!(parse("TOP 1"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            parse("AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(
            parse("auth plain"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: None
            })
        );
        assert_eq!(
            parse("AUTH PLAIN AGEAYg=="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGEAYg==".into()),
            })
        );
    }

    #[test]
    fn arguments_where_none_belong_are_refused() {
        assert!(matches!(parse("STAT 1"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("QUIT now"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn unknown_and_empty_lines() {
        assert_eq!(parse(""), Err(ParseError::Unknown));
        assert_eq!(parse("XYZZY"), Err(ParseError::Unknown));
        assert_eq!(parse("LAST"), Err(ParseError::Unknown));
    }
}
