//! The `Received:` trace header this server prepends (RFC 5321 4.4), with
//! the protocol keywords of RFC 3848 and RFC 6531 that tell TLS and
//! authentication apart.

use std::time::{SystemTime, UNIX_EPOCH};

/// What the trace header records about one message.
pub struct Trace<'a> {
    /// The client's HELO/EHLO/LHLO name.
    pub helo: &'a str,
    pub peer_address: &'a str,
    /// This server's name.
    pub hostname: &'a str,
    pub lmtp: bool,
    /// EHLO or LHLO rather than HELO.
    pub extended: bool,
    pub smtputf8: bool,
    /// TLS version and cipher, when encrypted.
    pub tls: Option<(&'a str, &'a str)>,
    /// The account that logged in, if any.
    pub authenticated: Option<&'a str>,
    /// The connection's id, as in the host's log.
    pub id: u64,
    /// The one recipient, named only when there is exactly one so that
    /// recipients do not learn about each other.
    pub recipient: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

impl Trace<'_> {
    /// The protocol keyword of the `with` clause.
    fn protocol(&self) -> String {
        let base = match (self.lmtp, self.extended, self.smtputf8) {
            (true, _, true) => "UTF8LMTP",
            (true, _, false) => "LMTP",
            (false, _, true) => "UTF8SMTP",
            (false, true, false) => "ESMTP",
            (false, false, false) => "SMTP",
        };
        let mut keyword = base.to_owned();
        if self.tls.is_some() {
            keyword.push('S');
        }
        if self.authenticated.is_some() {
            keyword.push('A');
        }
        keyword
    }

    /// The header, folded, ending in CRLF.
    pub fn header(&self) -> String {
        let peer = if self.peer_address.contains(':') {
            format!("IPv6:{}", self.peer_address)
        } else {
            self.peer_address.to_owned()
        };
        let mut header = format!(
            "Received: from {} ([{}])\r\n\tby {} (mailhost) with {} id {}",
            self.helo,
            peer,
            self.hostname,
            self.protocol(),
            self.id
        );
        if let Some((version, cipher)) = self.tls {
            header.push_str(&format!(
                "\r\n\t(using {version} with cipher {cipher})"
            ));
        }
        if let Some(account) = self.authenticated {
            header.push_str(&format!("\r\n\t(authenticated as {account})"));
        }
        if let Some(recipient) = self.recipient {
            header.push_str(&format!("\r\n\tfor <{recipient}>"));
        }
        header.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(self.now)));
        header
    }
}

/// Seconds since the Unix epoch now; 0 if the clock is before it.
pub fn now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => elapsed.as_secs() as i64,
        Err(_) => 0,
    }
}

/// An RFC 5322 date-time in UTC: `Thu, 3 Dec 2026 21:52:56 +0000`.
pub fn rfc5322_date(seconds: i64) -> String {
    const DAY: i64 = 86_400;
    const WEEKDAYS: [&str; 7] =
        ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
        "Nov", "Dec",
    ];

    let days = seconds.div_euclid(DAY);
    let time = seconds.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01 in
/// the proleptic Gregorian calendar. Works in 400-year eras, each of
/// which has exactly 146,097 days, counted from a March 1st so that the
/// leap day falls at the end of a year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    const ERA_DAYS: i64 = 146_097;
    // Days from 0000-03-01 to 1970-01-01.
    const EPOCH_SHIFT: i64 = 719_468;

    let shifted = days + EPOCH_SHIFT;
    let era = shifted.div_euclid(ERA_DAYS);
    let day_of_era = shifted.rem_euclid(ERA_DAYS);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524
        - day_of_era / 146_096)
        / 365;
    let day_of_year =
        day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 is March, 11 is February.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(1_796_334_776),
            "Thu, 3 Dec 2026 21:52:56 +0000"
        );
        assert_eq!(
            rfc5322_date(4_133_980_799),
            "Fri, 31 Dec 2100 23:59:59 +0000"
        );
    }

    #[test]
    fn header_names_tls_and_account() {
        let trace = Trace {
            helo: "client.example",
            peer_address: "::1",
            hostname: "mx.example.org",
            lmtp: false,
            extended: true,
            smtputf8: false,
            tls: Some(("TLSv1.3", "TLS13_AES_128_GCM_SHA256")),
            authenticated: Some("alice@example.org"),
            id: 7,
            recipient: Some("bob@example.org"),
            now: 0,
        };
        assert_eq!(
            trace.header(),
            "Received: from client.example ([IPv6:::1])\r\n\
             \tby mx.example.org (mailhost) with ESMTPSA id 7\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\
             \t(authenticated as alice@example.org)\r\n\
             \tfor <bob@example.org>;\r\n\
             \tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn protocol_keywords() {
        let mut trace = Trace {
            helo: "c",
            peer_address: "127.0.0.1",
            hostname: "h",
            lmtp: true,
            extended: true,
            smtputf8: false,
            tls: None,
            authenticated: None,
            id: 1,
            recipient: None,
            now: 0,
        };
        assert_eq!(trace.protocol(), "LMTP");
        trace.lmtp = false;
        trace.extended = false;
        assert_eq!(trace.protocol(), "SMTP");
        trace.smtputf8 = true;
        trace.authenticated = Some("a@b");
        assert_eq!(trace.protocol(), "UTF8SMTPA");
    }
}
