//! What every HTTP provider shares: the client's settings and reading `retry-after`.

use std::time::Duration;

/// A client with a connect timeout and `TCP_NODELAY` (tokens are small, latency-bound
/// writes). No overall timeout: a turn's own deadline bounds a stream.
pub(crate) fn client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// `retry-after-ms`, or `retry-after` in (possibly fractional) seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    // Both capped at an hour: `Duration::from_secs_f64` panics on a value too big for it.
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0)
            .then(|| Duration::from_secs_f64(ms.min(3_600_000.0) / 1000.0));
    }
    let secs = get("retry-after")?.parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(pairs: &[(&'static str, &str)]) -> Option<Duration> {
        let mut h = reqwest::header::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        retry_after(&h)
    }

    #[test]
    fn retry_after_is_read_and_capped() {
        assert_eq!(
            got(&[("retry-after-ms", "1500")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(got(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        // Found by fuzzing: a huge `retry-after-ms` panicked in `Duration::from_secs_f64`.
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(got(&[("retry-after-ms", "1e30")]), hour);
        assert_eq!(got(&[("retry-after", "1e300")]), hour);
        for bad in ["-1", "NaN", "inf", "soon"] {
            assert_eq!(got(&[("retry-after-ms", bad)]), None, "{bad}");
        }
    }
}
