//! Fixed-window request limits per client (auth endpoints) or per user (API).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    per_window: u32,
    window: Duration,
    counters: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    /// `per_window == 0` turns the limit off.
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self { per_window, window, counters: Mutex::new(HashMap::new()) }
    }

    /// The allowance per window (0: no limit).
    pub fn per_window(&self) -> u32 {
        self.per_window
    }

    /// `Err(seconds until the window resets)` once the key has used its allowance.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.per_window == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let Ok(mut counters) = self.counters.lock() else { return Ok(()) };
        if counters.len() > 100_000 {
            counters.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = counters.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_window {
            let left = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_then_refusal_with_retry_after() {
        let l = RateLimiter::new(2, Duration::from_secs(60));
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let retry = l.check("a").unwrap_err();
        assert!((1..=60).contains(&retry));
        assert!(l.check("b").is_ok(), "keys are independent");
    }

    #[test]
    fn zero_means_unlimited() {
        let l = RateLimiter::new(0, Duration::from_secs(60));
        assert!((0..1000).all(|_| l.check("a").is_ok()));
    }
}
