//! Dates in the shapes IMAP uses: INTERNALDATE (`17-Jul-1996 02:44:25
//! -0700`), SEARCH dates (`1-Feb-1994`) and the RFC 5322 `Date:` header.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
    "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5
        + i64::from(day)
        - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count: (year, month 1..=12, day 1..=31).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// INTERNALDATE text for seconds since the epoch, in UTC.
pub fn format_internal(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02} +0000",
        day,
        MONTHS[month as usize - 1],
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn month_number(name: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(name))
        .map(|i| i as u32 + 1)
}

/// A SEARCH date (`1-Feb-1994`) as days since the epoch.
pub fn parse_search_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = month_number(parts.next()?)?;
    let year: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// An APPEND date-time (`17-Jul-1996 02:44:25 -0700`, the day may be
/// space-padded) as seconds since the epoch.
pub fn parse_date_time(text: &str) -> Option<i64> {
    let text = text.trim_start();
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let days = parse_search_date(date)?;
    let secs = parse_time(time)?;
    let offset = parse_zone(zone)?;
    Some(days * 86_400 + secs - offset)
}

fn parse_time(time: &str) -> Option<i64> {
    let mut parts = time.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next().unwrap_or("0").parse().ok()?;
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// `+hhmm` / `-hhmm` as seconds east of UTC.
fn parse_zone(zone: &str) -> Option<i64> {
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = digits.parse().ok()?;
    Some(sign * (value / 100 * 3600 + value % 100 * 60))
}

/// The calendar date of an RFC 5322 `Date:` value as days since the
/// epoch, time and zone disregarded as SENTBEFORE and friends want.
pub fn parse_header_date(value: &str) -> Option<i64> {
    let value = value.split('(').next()?;
    let mut words = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty());
    let mut first = words.next()?;
    if first.chars().all(char::is_alphabetic) {
        first = words.next()?;
    }
    let day: u32 = first.parse().ok()?;
    let month = month_number(words.next()?)?;
    let mut year: i64 = words.next()?.parse().ok()?;
    // RFC 5322 4.3: obsolete two- and three-digit years.
    if year < 50 {
        year += 2000;
    } else if year < 1000 {
        year += 1900;
    }
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            civil_from_days(days_from_civil(2024, 2, 29)),
            (2024, 2, 29)
        );
        assert_eq!(format_internal(0), "01-Jan-1970 00:00:00 +0000");
    }

    #[test]
    fn append_dates() {
        let secs = parse_date_time("17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(format_internal(secs), "17-Jul-1996 09:44:25 +0000");
        assert!(parse_date_time(" 7-Jul-1996 02:44:25 +0000").is_some());
        assert!(parse_date_time("17-Jux-1996 02:44:25 -0700").is_none());
    }

    #[test]
    fn header_dates() {
        let day = parse_header_date("Sat, 14 Mar 2026 13:08:53 +0100");
        assert_eq!(day, Some(days_from_civil(2026, 3, 14)));
        assert_eq!(parse_header_date("garbage"), None);
    }
}
