//! The retry policy of the S3 client: one documented [`RetryConfig`], applied around every
//! request the client sends.
//!
//! Why here and not in the SDK: the SDK's own retry layer is switched off (one attempt per
//! call), so that a request is never retried by two layers that multiply into absurd counts,
//! and so that the decision what to repeat is made in exactly one place,
//! [`ObjectError::is_retryable`], for every backend alike. The same policy also drives the
//! resumption of a get body that breaks off mid-stream (see `get.rs`).
//!
//! Delays follow exponential backoff with "full jitter": before attempt `n + 1` the client
//! sleeps a uniformly random time in `[0, min(max_delay, base_delay * 2^(n-1))]`. Randomising
//! the whole interval spreads the retries of many concurrent requests (a downloader issuing
//! hundreds of ranged GETs that were all throttled at once) instead of synchronising them.

use std::future::Future;
use std::time::Duration;

use crate::ObjectError;

/// How often and how patiently the S3 client repeats a failed request.
///
/// Only failures for which [`ObjectError::is_retryable`] is true are repeated: throttling
/// (`SlowDown`, 429, 503), other 5xx answers, connection resets and refusals, timeouts and
/// bodies that end early. Missing objects, denials and invalid ranges fail at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts per request, the first one included; `1` disables retries. Default: 8.
    pub max_attempts: u32,
    /// Upper bound of the first backoff delay; each further retry doubles it. Default: 100 ms.
    pub base_delay: Duration,
    /// Cap of the backoff delay. Default: 20 s.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryConfig {
    /// A policy that makes exactly one attempt.
    pub fn disabled() -> Self {
        RetryConfig {
            max_attempts: 1,
            ..RetryConfig::default()
        }
    }

    /// Sets [`RetryConfig::max_attempts`] (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets [`RetryConfig::base_delay`].
    pub fn with_base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self
    }

    /// Sets [`RetryConfig::max_delay`].
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// The upper bound of the delay after the `failures`-th consecutive failure (1-based):
    /// `min(max_delay, base_delay * 2^(failures - 1))`.
    pub fn delay_cap(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << shift)
            .min(self.max_delay)
    }

    /// A random delay in `[0, delay_cap(failures)]` (full jitter).
    pub fn backoff(&self, failures: u32) -> Duration {
        let cap = self.delay_cap(failures);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    /// Whether a request that has failed `failures` times in a row with `err` may be tried
    /// again.
    pub(crate) fn should_retry(&self, failures: u32, err: &ObjectError) -> bool {
        err.is_retryable() && failures < self.max_attempts
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not retryable, or the
    /// attempts are used up; returns the last result.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        mut attempt: F,
    ) -> Result<T, ObjectError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ObjectError>>,
    {
        let mut failures = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(err) => {
                    failures += 1;
                    if !self.should_retry(failures, &err) {
                        return Err(err);
                    }
                    let delay = self.backoff(failures);
                    tracing::debug!(
                        operation,
                        attempt = failures,
                        delay_ms = delay.as_millis() as u64,
                        error = %err,
                        "retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn reset() -> ObjectError {
        ObjectError::Io {
            operation: "GetObject",
            bucket: "b".into(),
            key: "k".into(),
            source: io::Error::from(io::ErrorKind::ConnectionReset),
        }
    }

    fn fast() -> RetryConfig {
        RetryConfig::default()
            .with_base_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(2))
    }

    #[test]
    fn delay_cap_doubles_up_to_the_maximum() {
        let r = RetryConfig::default();
        assert_eq!(r.delay_cap(1), Duration::from_millis(100));
        assert_eq!(r.delay_cap(2), Duration::from_millis(200));
        assert_eq!(r.delay_cap(5), Duration::from_millis(1600));
        assert_eq!(r.delay_cap(40), Duration::from_secs(20));
        for n in 1..20 {
            assert!(r.backoff(n) <= r.delay_cap(n));
        }
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicU32::new(0);
        let out = fast()
            .run("GetObject", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(reset())
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!((out, calls.load(Ordering::SeqCst)), (7, 4));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let err = fast()
            .with_max_attempts(3)
            .run("GetObject", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(reset())
            })
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn never_repeats_a_final_error() {
        let calls = AtomicU32::new(0);
        let err = fast()
            .run("GetObject", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ObjectError::NotFound {
                    bucket: "b".into(),
                    key: "k".into(),
                })
            })
            .await
            .unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
