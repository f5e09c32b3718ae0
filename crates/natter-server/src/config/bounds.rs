//! Upper (and lower) bounds on numbers and durations: an absurd value is refused at startup,
//! naming its key, rather than overflowing a clock or preallocating a queue.

use std::time::Duration;

use anyhow::bail;

/// A heartbeat setting: at least 50 ms (shorter would be all pings and no chat), at most an hour.
pub(super) fn heartbeat_millis(
    what: &str,
    v: Option<u64>,
    default: u64,
) -> anyhow::Result<Duration> {
    match v.unwrap_or(default) {
        ms @ 50..=3_600_000 => Ok(Duration::from_millis(ms)),
        ms => bail!("{what} must be between 50 and 3600000 milliseconds, got {ms}"),
    }
}

/// A duration setting in seconds, at most `max_secs`: anything longer is a typo, and some are
/// added to the clock, where an absurd value would overflow.
pub(super) fn secs(what: &str, v: f64, max_secs: u64) -> anyhow::Result<Duration> {
    let d = Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("{what} must be a non-negative number of seconds, got {v}"))?;
    if d > Duration::from_secs(max_secs) {
        bail!("{what} must be at most {max_secs} seconds, got {v}");
    }
    Ok(d)
}

/// A count setting, at most `max`: larger values are preallocated or make the runtime panic.
pub(super) fn at_most<T: PartialOrd + std::fmt::Display>(
    what: &str,
    v: T,
    max: T,
) -> anyhow::Result<T> {
    if v > max {
        bail!("{what} must be at most {max}, got {v}");
    }
    Ok(v)
}

pub(super) const HOUR: u64 = 3_600;
pub(super) const DAY: u64 = 86_400;
/// Counts that size queues, channels and semaphores.
pub(super) const MAX_QUEUE: usize = 1 << 20;
