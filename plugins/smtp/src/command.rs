//! Command lines: the verb and its arguments (RFC 5321 4.1.1, RFC 2033,
//! RFC 3030, RFC 3207, RFC 4954).

/// One command as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    Lhlo(String),
    /// The text after `MAIL FROM:`.
    Mail(String),
    /// The text after `RCPT TO:`.
    Rcpt(String),
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    Expn,
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

/// Why a line is not a command this server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// No such verb: 500.
    Unknown,
    /// A known verb with bad arguments: 501, with the expected syntax.
    Syntax(&'static str),
}

/// Parse one command line, terminator already removed.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let (verb, args) = match line.split_once(' ') {
        Some((verb, args)) => (verb, args),
        None => (line, ""),
    };

    match verb.to_ascii_uppercase().as_str() {
        "HELO" => domain_arg(args, "HELO <domain>").map(Command::Helo),
        "EHLO" => domain_arg(args, "EHLO <domain>").map(Command::Ehlo),
        "LHLO" => domain_arg(args, "LHLO <domain>").map(Command::Lhlo),
        "MAIL" => {
            prefixed(args, "FROM:", "MAIL FROM:<address>").map(Command::Mail)
        }
        "RCPT" => prefixed(args, "TO:", "RCPT TO:<address>").map(Command::Rcpt),
        "DATA" => no_args(args, "DATA", Command::Data),
        "BDAT" => bdat(args),
        "RSET" => no_args(args, "RSET", Command::Rset),
        // NOOP and HELP may carry a string that is ignored.
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "QUIT" => no_args(args, "QUIT", Command::Quit),
        "VRFY" if !args.trim().is_empty() => Ok(Command::Vrfy),
        "VRFY" => Err(CommandError::Syntax("VRFY <address>")),
        "EXPN" => Ok(Command::Expn),
        "STARTTLS" => no_args(args, "STARTTLS", Command::StartTls),
        "AUTH" => auth(args),
        _ => Err(CommandError::Unknown),
    }
}

fn no_args(
    args: &str,
    syntax: &'static str,
    command: Command,
) -> Result<Command, CommandError> {
    if args.trim().is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax(syntax))
    }
}

/// `MAIL FROM:` and `RCPT TO:`, allowing the space after the colon that
/// some clients send.
fn prefixed(
    args: &str,
    prefix: &str,
    syntax: &'static str,
) -> Result<String, CommandError> {
    let head = args
        .get(..prefix.len())
        .ok_or(CommandError::Syntax(syntax))?;
    if !head.eq_ignore_ascii_case(prefix) {
        return Err(CommandError::Syntax(syntax));
    }
    let rest = args[prefix.len()..].trim_start_matches(' ');
    if rest.is_empty() {
        return Err(CommandError::Syntax(syntax));
    }
    Ok(rest.trim_end_matches(' ').to_owned())
}

/// The argument of HELO, EHLO and LHLO: a domain or an address literal.
/// Letters beyond ASCII are allowed for U-labels (RFC 6531 3.7.1) and `_`
/// for the hosts that put one in their name.
fn domain_arg(
    args: &str,
    syntax: &'static str,
) -> Result<String, CommandError> {
    const MAX_HELO: usize = 255;

    let name = args.trim_matches(' ');
    let valid = if let Some(literal) = name.strip_prefix('[') {
        literal
            .strip_suffix(']')
            .is_some_and(crate::address::is_address_literal)
    } else {
        !name.is_empty()
            && !name.starts_with('.')
            && !name.contains("..")
            && name.chars().all(|c| {
                c.is_ascii_alphanumeric() || "-._".contains(c) || !c.is_ascii()
            })
    };
    if !valid || name.len() > MAX_HELO {
        return Err(CommandError::Syntax(syntax));
    }
    Ok(name.to_owned())
}

/// `BDAT <size> [LAST]` (RFC 3030 2).
fn bdat(args: &str) -> Result<Command, CommandError> {
    const SYNTAX: &str = "BDAT <size> [LAST]";
    const MAX_SIZE_DIGITS: usize = 20;

    let mut words = args.split(' ').filter(|word| !word.is_empty());
    let size = words.next().ok_or(CommandError::Syntax(SYNTAX))?;
    if size.len() > MAX_SIZE_DIGITS || !size.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(CommandError::Syntax(SYNTAX));
    }
    let size = size.parse().map_err(|_| CommandError::Syntax(SYNTAX))?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax(SYNTAX)),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax(SYNTAX));
    }
    Ok(Command::Bdat { size, last })
}

/// `AUTH <mechanism> [initial-response]` (RFC 4954 4).
fn auth(args: &str) -> Result<Command, CommandError> {
    const SYNTAX: &str = "AUTH <mechanism> [initial-response]";

    let mut words = args.split(' ').filter(|word| !word.is_empty());
    let mechanism = words.next().ok_or(CommandError::Syntax(SYNTAX))?;
    let initial = words.next().map(str::to_owned);
    if words.next().is_some() {
        return Err(CommandError::Syntax(SYNTAX));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_ignore_case() {
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(
            parse("EhLo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(parse("NOOP anything"), Ok(Command::Noop));
    }

    #[test]
    fn mail_and_rcpt() {
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SIZE=1"),
            Ok(Command::Mail("<a@b.example> SIZE=1".into()))
        );
        assert_eq!(
            parse("mail from: <a@b>"),
            Ok(Command::Mail("<a@b>".into()))
        );
        assert_eq!(parse("RCPT TO:<x@y>"), Ok(Command::Rcpt("<x@y>".into())));
        assert!(matches!(parse("MAIL <a@b>"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse("MAIL FROM:"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse("RCPT"), Err(CommandError::Syntax(_))));
    }

    #[test]
    fn helo_needs_a_domain() {
        assert!(matches!(parse("EHLO"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse("HELO a b"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse("EHLO a(b)"), Err(CommandError::Syntax(_))));
        assert_eq!(
            parse("HELO [127.0.0.1]"),
            Ok(Command::Helo("[127.0.0.1]".into()))
        );
        assert!(matches!(parse("HELO [nope]"), Err(CommandError::Syntax(_))));
    }

    #[test]
    fn bdat_arguments() {
        assert_eq!(
            parse("BDAT 10 LAST"),
            Ok(Command::Bdat {
                size: 10,
                last: true
            })
        );
        assert_eq!(
            parse("bdat 0"),
            Ok(Command::Bdat {
                size: 0,
                last: false
            })
        );
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT -1",
            "BDAT 1 FIRST",
            "BDAT 1 LAST x",
            "BDAT 99999999999999999999",
        ] {
            assert!(
                matches!(parse(bad), Err(CommandError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn auth_arguments() {
        assert_eq!(
            parse("AUTH plain AGFAYgBj"),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGFAYgBj".into())
            })
        );
        assert!(matches!(parse("AUTH"), Err(CommandError::Syntax(_))));
    }

    #[test]
    fn arguments_where_none_belong() {
        assert!(matches!(parse("DATA now"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse("QUIT x"), Err(CommandError::Syntax(_))));
        assert_eq!(parse("XYZZY"), Err(CommandError::Unknown));
        assert_eq!(parse(""), Err(CommandError::Unknown));
    }
}
