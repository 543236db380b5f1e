//! Date values for the `Date…` operators: W3C ISO 8601 timestamps or epoch seconds.
//!
//! AWS compares dates as instants, so both sides are reduced to nanoseconds since the
//! Unix epoch. Only the extended ISO 8601 forms that AWS documents are accepted
//! (`2024-01-31`, `2024-01-31T12:00Z`, `2024-01-31T12:00:00.5+02:00`, …); a bare integer
//! or decimal is epoch seconds. A timestamp without a zone is taken as UTC.

/// An instant, in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp(i128);

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Parses an ISO 8601 timestamp or epoch seconds.
pub(crate) fn parse(value: &str) -> Option<Timestamp> {
    parse_epoch(value).or_else(|| parse_iso(value))
}

fn parse_epoch(value: &str) -> Option<Timestamp> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || whole.len() > 18 {
        return None;
    }
    let seconds: i128 = whole.parse().ok()?;
    let nanos = fraction_nanos(fraction)?;
    let total = seconds * NANOS_PER_SECOND + nanos;
    Some(Timestamp(if negative { -total } else { total }))
}

fn parse_iso(value: &str) -> Option<Timestamp> {
    let bytes = value.as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = number(value.get(0..4)?)?;
    let month = number(value.get(5..7)?)?;
    let day = number(value.get(8..10)?)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    let mut nanos = 0;
    let rest = value.get(10..)?;
    if let Some(time) = rest.strip_prefix(['T', 't']) {
        let (clock, zone) = split_zone(time)?;
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let parts: Vec<&str> = hms.split(':').collect();
        let (hour, minute, second) = match parts[..] {
            [h, m] => (number(h)?, number(m)?, 0),
            [h, m, s] => (number(h)?, number(m)?, number(s)?),
            _ => return None,
        };
        if parts.iter().any(|p| p.len() != 2) || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        if !fraction.is_empty() && parts.len() != 3 {
            return None;
        }
        if clock.contains('.') && fraction.is_empty() {
            return None;
        }
        nanos = fraction_nanos(fraction)?;
        seconds += hour * 3_600 + minute * 60 + second - zone;
    } else if !rest.is_empty() {
        return None;
    }
    Some(Timestamp(i128::from(seconds) * NANOS_PER_SECOND + nanos))
}

/// Splits `hh:mm[:ss[.f]]` from its zone designator; returns the zone offset in seconds.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let Some(sign_at) = time.rfind(['+', '-']) else {
        return Some((time, 0));
    };
    let (clock, zone) = time.split_at(sign_at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let zone = zone.get(1..)?;
    let (hours, minutes) = match zone.len() {
        2 => (zone, "00"),
        4 => (zone.get(0..2)?, zone.get(2..4)?),
        5 if zone.get(2..3) == Some(":") => (zone.get(0..2)?, zone.get(3..5)?),
        _ => return None,
    };
    let (hours, minutes) = (number(hours)?, number(minutes)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((clock, sign * (hours * 3_600 + minutes * 60)))
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

fn number(s: &str) -> Option<i64> {
    if s.is_empty() || !all_digits(s) {
        return None;
    }
    s.parse().ok()
}

/// Nanoseconds of a decimal fraction (digits after the point); more than nine digits
/// are truncated.
fn fraction_nanos(fraction: &str) -> Option<i128> {
    if !all_digits(fraction) {
        return None;
    }
    let mut nanos: i128 = 0;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        let place = 10_i128.pow(8 - u32::try_from(i).ok()?);
        nanos += i128::from(digit - b'0') * place;
    }
    Some(nanos)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(value: &str) -> Option<i128> {
        parse(value).map(|t| t.0 / NANOS_PER_SECOND)
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<i128>)] = &[
            ("0", Some(0)),
            ("1700000000", Some(1_700_000_000)),
            ("-86400", Some(-86_400)),
            ("1970-01-01", Some(0)),
            ("1970-01-02", Some(86_400)),
            ("2000-03-01", Some(951_868_800)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800)),
            ("2024-02-29T12:30Z", Some(1_709_209_800)),
            ("2024-02-29T12:30:15", Some(1_709_209_815)),
            ("2024-02-29T12:30:15.999Z", Some(1_709_209_815)),
            ("2024-02-29T14:30:15+02:00", Some(1_709_209_815)),
            ("2024-02-29T10:30:15-0200", Some(1_709_209_815)),
            ("2024-02-29T14:30:15+02", Some(1_709_209_815)),
            ("1969-12-31T23:59:59Z", Some(-1)),
            ("2023-02-29", None),
            ("2024-13-01", None),
            ("2024-01-01T24:00:00Z", None),
            ("2024-01-01T1:00Z", None),
            ("2024-01-01T10:00:00.Z", None),
            ("2024-01-01X", None),
            ("2024", Some(2024)),
            ("yesterday", None),
            ("", None),
            ("1.5e3", None),
        ];
        for (input, expected) in cases {
            assert_eq!(seconds(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn fractions_order_correctly() {
        let a = parse("2024-01-01T00:00:00.1Z").unwrap();
        let b = parse("2024-01-01T00:00:00.25Z").unwrap();
        assert!(a < b);
        assert_eq!(parse("1.5").unwrap().0, 1_500_000_000);
        assert_eq!(parse("1704067200.1"), Some(a));
    }
}
