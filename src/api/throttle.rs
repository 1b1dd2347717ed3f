//! Failed authentications, counted per client address: past a limit in a
//! minute, that address gets 429 until the minute is over, so a weak or
//! leaked-looking token cannot be guessed online at full speed (L1).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; past that the oldest windows are dropped.
const MAX_TRACKED: usize = 10_000;

/// Counts failed authentications per address over a fixed window.
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthThrottle {
    /// At most `limit` failures per address per `window` (0: no limit).
    pub fn new(limit: u32, window: Duration) -> AuthThrottle {
        AuthThrottle {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds `ip` must wait, if it is over the limit.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        if self.limit == 0 {
            return None;
        }
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = failures.get(&ip)?;
        let left = self.window.checked_sub(since.elapsed())?;
        (*count >= self.limit).then(|| left.as_secs().max(1))
    }

    /// Records a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&ip) {
            let window = self.window;
            failures.retain(|_, (_, since)| since.elapsed() < window);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_the_limit_waits_out_the_window_and_others_do_not() {
        let t = AuthThrottle::new(3, Duration::from_millis(200));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert_eq!(t.blocked(a), None);
            t.failed(a);
        }
        assert!(t.blocked(a).is_some());
        assert_eq!(t.blocked(b), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.blocked(a), None, "the window is over");
        assert_eq!(AuthThrottle::new(0, Duration::from_secs(60)).blocked(a), None);
    }
}
