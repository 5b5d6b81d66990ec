//! Slowing repeated failed logins, per client address and per account.
//!
//! Each key (the client's address, and the account name tried) counts
//! recent failures. A failure is answered after a delay that grows with
//! the larger of the two counts: none for the first, then
//! [`FIRST_DELAY`], doubling up to [`MAX_DELAY`]. Every
//! [`DECAY_PERIOD`] without a failure forgets one. IPv6 clients are
//! keyed by their /64, since one host commonly owns a whole /64.
//!
//! Pure logic over caller-supplied instants, so it is tested without
//! sleeping. The host sleeps for the delay before it answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The delay after the second failure; the first costs nothing.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);

/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(8);

/// Quiet time that forgets one failure.
pub const DECAY_PERIOD: Duration = Duration::from_secs(60);

/// How many keys are tracked at most; beyond that the stalest go. An
/// attacker spraying addresses cannot grow memory past this.
pub const MAX_TRACKED_KEYS: usize = 100_000;

/// Failures never count beyond this; it is past the delay cap anyway.
const MAX_COUNT: u32 = 32;

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u32,
    last: Instant,
}

impl Entry {
    /// The count after decay at `now`.
    fn decayed(&self, now: Instant) -> u32 {
        let quiet = now.saturating_duration_since(self.last);
        let periods = (quiet.as_secs() / DECAY_PERIOD.as_secs().max(1)) as u32;
        self.count.saturating_sub(periods)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Peer(IpAddr),
    Account(String),
}

/// Failed-login bookkeeping, shared by all sessions.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// The key of a client address: IPv4 as is, IPv6 cut to its /64.
fn peer_key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(_) => Key::Peer(ip),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Peer(IpAddr::V4(v4)),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Key::Peer(IpAddr::V6(bits.into()))
            }
        },
    }
}

/// The delay for `count` recent failures, this one included.
fn delay_for(count: u32) -> Duration {
    if count <= 1 {
        return Duration::ZERO;
    }
    let doublings = (count - 2).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

impl LoginThrottle {
    /// An empty throttle.
    pub fn new() -> LoginThrottle {
        LoginThrottle::default()
    }

    /// Record a failed login from `peer` for `account` (as typed, lower
    /// case applied here) at `now`, and return how long to wait before
    /// answering it.
    pub fn failure(
        &self,
        peer: IpAddr,
        account: &str,
        now: Instant,
    ) -> Duration {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED_KEYS {
            evict(&mut map, now);
        }

        let mut worst = 0;
        for key in [peer_key(peer), Key::Account(account.to_ascii_lowercase())]
        {
            let entry = map.entry(key).or_insert(Entry {
                count: 0,
                last: now,
            });
            entry.count = (entry.decayed(now) + 1).min(MAX_COUNT);
            entry.last = now;
            worst = worst.max(entry.count);
        }
        delay_for(worst)
    }

    /// The delay a failure would get now, without recording one.
    pub fn current_delay(
        &self,
        peer: IpAddr,
        account: &str,
        now: Instant,
    ) -> Duration {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let count = |k: &Key| map.get(k).map_or(0, |e| e.decayed(now));
        let worst = count(&peer_key(peer))
            .max(count(&Key::Account(account.to_ascii_lowercase())));
        delay_for(worst + 1)
    }

    /// A successful login clears the account's count (not the peer's:
    /// one good password must not launder a spray from that address).
    pub fn success(&self, account: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&Key::Account(account.to_ascii_lowercase()));
    }

    /// How many keys are tracked.
    pub fn tracked(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Drop fully decayed entries; if still full, the stalest half.
fn evict(map: &mut HashMap<Key, Entry>, now: Instant) {
    map.retain(|_, e| e.decayed(now) > 0);
    if map.len() >= MAX_TRACKED_KEYS {
        let mut ages: Vec<Instant> = map.values().map(|e| e.last).collect();
        ages.sort_unstable();
        let cutoff = ages[ages.len() / 2];
        map.retain(|_, e| e.last > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn delay_grows_doubling_to_the_cap() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        let delays: Vec<u64> = (0..10)
            .map(|_| {
                t.failure(PEER, "alice@example.org", now).as_millis() as u64
            })
            .collect();
        assert_eq!(
            delays,
            [0, 250, 500, 1000, 2000, 4000, 8000, 8000, 8000, 8000]
        );
    }

    #[test]
    fn keyed_by_account_across_peers_and_by_peer_across_accounts() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        for i in 0..4u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, i));
            t.failure(ip, "alice@example.org", now);
        }
        let other = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!(
            t.failure(other, "Alice@example.org", now),
            Duration::from_secs(2)
        );

        // Password spraying: one address, many accounts.
        let t = LoginThrottle::new();
        for i in 0..4 {
            t.failure(PEER, &format!("user{i}@example.org"), now);
        }
        assert_eq!(
            t.failure(PEER, "fresh@example.org", now),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn ipv6_keyed_by_slash_64() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        for i in 0..3u16 {
            let ip: IpAddr = format!("2001:db8::{i:x}").parse().unwrap();
            t.failure(ip, &format!("u{i}@example.org"), now);
        }
        let same_64: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        assert_eq!(
            t.failure(same_64, "x@example.org", now),
            Duration::from_secs(1)
        );
        let other_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!(t.failure(other_64, "y@example.org", now), Duration::ZERO);
    }

    #[test]
    fn decays_when_quiet_and_success_clears_account() {
        let t = LoginThrottle::new();
        let start = Instant::now();
        for _ in 0..5 {
            t.failure(PEER, "a@example.org", start);
        }
        let later = start + DECAY_PERIOD * 3;
        // Five failures, three forgotten, this one makes three.
        assert_eq!(
            t.failure(PEER, "a@example.org", later),
            Duration::from_millis(500)
        );
        let much_later = later + DECAY_PERIOD * 40;
        assert_eq!(
            t.current_delay(PEER, "a@example.org", much_later),
            Duration::ZERO
        );

        let other: IpAddr = "192.0.2.77".parse().unwrap();
        t.failure(other, "b@example.org", start);
        t.failure(other, "b@example.org", start);
        t.success("b@example.org");
        let fresh: IpAddr = "192.0.2.78".parse().unwrap();
        assert_eq!(
            t.current_delay(fresh, "b@example.org", start),
            Duration::ZERO
        );
    }

    #[test]
    fn memory_is_bounded_under_address_spray() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_KEYS as u32 + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failure(
                ip,
                "victim@example.org",
                now + Duration::from_nanos(u64::from(i)),
            );
        }
        assert!(t.tracked() <= MAX_TRACKED_KEYS, "{}", t.tracked());
    }
}
