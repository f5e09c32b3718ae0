//! Timestamps on the wire: ISO 8601 on the Socket.IO face, epoch milliseconds elsewhere.

/// Milliseconds since the UNIX epoch, the form the store keeps.
pub type UnixMillis = i64;

/// Formats epoch milliseconds as an RFC 3339 / ISO 8601 UTC string with millisecond precision.
pub fn iso8601(ms: UnixMillis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
            let (h, mi, s) = (t.hour(), t.minute(), t.second());
            format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
                t.millisecond()
            )
        }
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// `0000-01-01T00:00:00.000Z` and `9999-12-31T23:59:59.999Z`: the instants RFC 3339 can
/// write in UTC.
const RFC3339_UTC_RANGE: std::ops::RangeInclusive<UnixMillis> =
    -62_167_219_200_000..=253_402_300_799_999;

/// Parses an ISO 8601 / RFC 3339 timestamp into epoch milliseconds. Refuses an instant that
/// only exists with its offset (`0000-01-01T00:00:00+01:00` is in year -1 in UTC), since
/// [`iso8601`] could not write it back.
pub fn parse_iso8601(s: &str) -> Option<UnixMillis> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .ok()
        .filter(|ms| RFC3339_UTC_RANGE.contains(ms))
}

/// The current time in epoch milliseconds.
pub fn now_millis() -> UnixMillis {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        let ms = 1_763_790_000_123;
        let s = iso8601(ms);
        assert_eq!(s, "2025-11-22T05:40:00.123Z");
        assert_eq!(parse_iso8601(&s), Some(ms));
    }

    #[test]
    fn only_instants_that_can_be_written_back() {
        // Found by fuzzing `message:read`: these parsed, and went back out as
        // `-001-12-31T00:01:00.000Z` and `1970-01-01T00:00:00.000Z`.
        assert_eq!(parse_iso8601("0000-01-01T00:00:00+23:59"), None);
        assert_eq!(parse_iso8601("9999-12-31T23:59:59-23:59"), None);
        for s in ["0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"] {
            let ms = parse_iso8601(s).unwrap();
            assert_eq!(iso8601(ms), s);
        }
        assert_eq!(
            parse_iso8601("0000-01-01T00:59:00+00:59"),
            parse_iso8601("0000-01-01T00:00:00Z")
        );
    }
}
