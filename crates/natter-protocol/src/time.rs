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

/// Parses an ISO 8601 / RFC 3339 timestamp into epoch milliseconds.
pub fn parse_iso8601(s: &str) -> Option<UnixMillis> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
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
}
