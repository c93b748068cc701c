//! Waiting for a condition, never for a fixed time.
//!
//! A condition is an async closure that answers `Ok(value)` once it holds and
//! `Err(observed)` while it does not, `observed` being what it saw (a status
//! document, a count, a sentence). When the time is up, the wait fails with
//! the last thing observed, so a failing test says what state it was stuck in
//! rather than just "timed out". Each check is itself bounded by what is left
//! of the timeout, so a check that hangs (a server that accepts and never
//! answers) cannot stretch the wait.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// A wait that ran out of time.
#[derive(Debug)]
pub struct Timeout<S> {
    pub waited: Duration,
    pub checks: u32,
    /// What the last check that finished observed (`None` if none finished).
    pub last: Option<S>,
}

impl<S: Debug> std::fmt::Display for Timeout<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.last {
            Some(s) => write!(
                f,
                "condition still false after {:?} ({} checks); last observed: {s:#?}",
                self.waited, self.checks
            ),
            None => write!(f, "no check finished within {:?}", self.waited),
        }
    }
}

/// Checks `condition` every `interval` until it holds or `timeout` passes.
pub async fn try_wait_until<T, S, F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut condition: F,
) -> Result<T, Timeout<S>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last = None;
    let mut checks = 0;
    loop {
        checks += 1;
        match tokio::time::timeout_at(deadline, condition()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(s)) => last = Some(s),
            Err(_) => break,
        }
        let next = Instant::now() + interval;
        if next >= deadline {
            break;
        }
        tokio::time::sleep_until(next).await;
    }
    Err(Timeout { waited: start.elapsed(), checks, last })
}

/// Like [`try_wait_until`], but panics with the last observed state.
///
/// # Panics
/// When `condition` does not hold within `timeout`.
pub async fn wait_until<T, S, F, Fut>(timeout: Duration, interval: Duration, condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S>>,
    S: Debug,
{
    match try_wait_until(timeout, interval, condition).await {
        Ok(v) => v,
        Err(e) => panic!("wait_until: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let n = AtomicU32::new(0);
        let v = wait_until(Duration::from_secs(2), Duration::from_millis(1), || async {
            let k = n.fetch_add(1, Ordering::SeqCst);
            if k >= 3 {
                Ok(k)
            } else {
                Err(format!("k = {k}"))
            }
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn fails_with_the_last_observed_state() {
        let e = try_wait_until(Duration::from_millis(50), Duration::from_millis(5), || async { Err::<(), _>("stuck") })
            .await
            .unwrap_err();
        assert_eq!(e.last, Some("stuck"));
        assert!(e.to_string().contains("stuck"));
    }

    #[tokio::test]
    async fn a_hanging_check_does_not_stretch_the_wait() {
        let start = Instant::now();
        let e = try_wait_until(Duration::from_millis(50), Duration::from_millis(5), || async {
            std::future::pending::<Result<(), ()>>().await
        })
        .await
        .unwrap_err();
        assert!(e.last.is_none());
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
