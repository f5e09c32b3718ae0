//! Reconnect delays: exponential backoff with full jitter.
//!
//! Attempt `n` (1-based) waits a uniformly random time in `[0, cap(n)]`, where
//! `cap(n) = min(max_delay, initial_delay · 2^(n-1))`. Full jitter (rather than a fixed
//! schedule) spreads the clients of a restarted server over the window instead of having them
//! all knock at the same instants.

use std::time::Duration;

/// When and how often to reconnect after a connection is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Reconnect at all. Off: a lost connection ends the client.
    pub enabled: bool,
    /// The cap of the first attempt's delay.
    pub initial_delay: Duration,
    /// The largest delay between attempts.
    pub max_delay: Duration,
    /// Attempts per outage before giving up; `None`: never give up.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    /// socket.io-client's defaults: 1 s growing to 5 s, forever.
    fn default() -> Self {
        Self {
            enabled: true,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// No reconnection.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The upper bound of attempt `attempt`'s delay (attempt 1 is the first retry).
    pub fn cap(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let initial_ms = u64::try_from(self.initial_delay.as_millis()).unwrap_or(u64::MAX);
        let max_ms = u64::try_from(self.max_delay.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(initial_ms.saturating_mul(factor).min(max_ms))
    }

    /// The delay for `attempt`, with `unit` in `[0, 1)` choosing where in `[0, cap]` it falls.
    pub fn delay_at(&self, attempt: u32, unit: f64) -> Duration {
        // NaN would make `mul_f64` panic; it counts as the bottom of the window.
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.cap(attempt).mul_f64(unit)
    }

    /// A random delay for `attempt` (full jitter).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, fastrand::f64())
    }

    /// Whether `attempt` is still allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        self.enabled && self.max_attempts.is_none_or(|max| attempt <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(3_000),
            max_attempts: Some(10),
        }
    }

    #[test]
    fn caps_double_then_stop_at_max() {
        let p = policy();
        let caps: Vec<u128> = (1..=8).map(|n| p.cap(n).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1600, 3000, 3000, 3000]);
        for pair in caps.windows(2) {
            assert!(pair[0] <= pair[1], "caps must never shrink: {caps:?}");
        }
        // Huge attempt numbers neither overflow nor pass the max.
        assert_eq!(p.cap(u32::MAX), Duration::from_millis(3_000));
        assert_eq!(p.cap(0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_zero_and_cap() {
        let p = policy();
        for attempt in 1..=12 {
            let cap = p.cap(attempt);
            for _ in 0..500 {
                let d = p.delay(attempt);
                assert!(d <= cap, "attempt {attempt}: {d:?} over cap {cap:?}");
            }
            assert_eq!(p.delay_at(attempt, 0.0), Duration::ZERO);
            assert_eq!(p.delay_at(attempt, 1.0), cap);
            assert_eq!(p.delay_at(attempt, 0.5), cap / 2);
            // Out-of-range units are clamped, never past the cap.
            assert_eq!(p.delay_at(attempt, 7.0), cap);
            assert_eq!(p.delay_at(attempt, f64::NAN), Duration::ZERO);
            assert_eq!(p.delay_at(attempt, f64::NEG_INFINITY), Duration::ZERO);
        }
    }

    #[test]
    fn jitter_is_spread_over_the_window() {
        // Full jitter, not "cap minus a little": over many draws both halves are hit.
        let p = policy();
        let cap = p.cap(6);
        let draws: Vec<Duration> = (0..1000).map(|_| p.delay(6)).collect();
        assert!(draws.iter().any(|d| *d < cap / 4));
        assert!(draws.iter().any(|d| *d > cap * 3 / 4));
    }

    #[test]
    fn attempts_are_bounded() {
        let p = policy();
        assert!(p.allows(1));
        assert!(p.allows(10));
        assert!(!p.allows(11));
        let forever = ReconnectPolicy {
            max_attempts: None,
            ..policy()
        };
        assert!(forever.allows(u32::MAX));
        assert!(!ReconnectPolicy::disabled().allows(1));
    }
}
