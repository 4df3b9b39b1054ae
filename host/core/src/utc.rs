//! Calendar days and times in UTC, as records and reports write them.

/// The UTC calendar day of a Unix time in milliseconds, as `YYYY-MM-DD`.
pub fn day(ms: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds.
pub fn time(ms: u64) -> String {
    let of_day = ms % 86_400_000;
    format!(
        "{} {:02}:{:02}:{:02}.{:03}",
        day(ms),
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_utc_calendar_days() {
        use super::day;
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(1_782_518_400_000), "2026-06-27");
        assert_eq!(day(1_782_604_799_999), "2026-06-27");
        assert_eq!(day(951_782_400_000), "2000-02-29");
    }
}
