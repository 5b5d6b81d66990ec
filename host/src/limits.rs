//! Connection limits, checked the moment a connection is accepted and
//! before any plugin instance exists, so a flood of refused connections
//! costs a counter update and a short write each.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Which limit refused a connection, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Global,
    GlobalPerIp,
    Listener,
    ListenerPerIp,
}

impl LimitHit {
    pub fn name(self) -> &'static str {
        match self {
            LimitHit::Global => "max-connections",
            LimitHit::GlobalPerIp => "max-connections-per-ip",
            LimitHit::Listener => "listener max-connections",
            LimitHit::ListenerPerIp => "listener max-connections-per-ip",
        }
    }
}

/// Counts of open sessions against a total and a per-IP maximum.
///
/// The maxima are atomics so a config reload can change them in place:
/// the counts of sessions already open stay, and a lowered maximum only
/// refuses new sessions until enough of the open ones end.
#[derive(Debug)]
pub struct Counter {
    max_total: AtomicU32,
    max_per_ip: AtomicU32,
    state: Mutex<CounterState>,
}

#[derive(Debug, Default)]
struct CounterState {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

impl Counter {
    pub fn new(max_total: u32, max_per_ip: u32) -> Arc<Counter> {
        Arc::new(Counter {
            max_total: AtomicU32::new(max_total),
            max_per_ip: AtomicU32::new(max_per_ip),
            state: Mutex::new(CounterState::default()),
        })
    }

    /// Apply new maxima to new sessions; open sessions keep their places.
    pub fn set_maxima(&self, max_total: u32, max_per_ip: u32) {
        // Under the lock, so no admission sees one new maximum and one
        // old one.
        let _state = self.state.lock().unwrap();
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// The maxima now in force: (total, per IP).
    #[cfg(test)]
    pub fn maxima(&self) -> (u32, u32) {
        let _state = self.state.lock().unwrap();
        (
            self.max_total.load(Ordering::Relaxed),
            self.max_per_ip.load(Ordering::Relaxed),
        )
    }

    /// Sessions open now.
    pub fn open(&self) -> u32 {
        self.state.lock().unwrap().total
    }

    /// Count one more session from `ip`, or say which limit is full.
    /// One map lookup each way: the per-IP count is looked up through
    /// its entry, since every accept and every close pays for the hash.
    fn try_acquire(&self, ip: IpAddr) -> Result<(), TotalOrIp> {
        let mut state = self.state.lock().unwrap();
        let CounterState { total, per_ip } = &mut *state;
        if *total >= self.max_total.load(Ordering::Relaxed) {
            return Err(TotalOrIp::Total);
        }

        let max_per_ip = self.max_per_ip.load(Ordering::Relaxed);
        match per_ip.entry(ip) {
            Entry::Occupied(mut open) => {
                if *open.get() >= max_per_ip {
                    return Err(TotalOrIp::Ip);
                }
                *open.get_mut() += 1;
            }
            Entry::Vacant(first) => {
                if max_per_ip == 0 {
                    return Err(TotalOrIp::Ip);
                }
                first.insert(1);
            }
        }
        *total += 1;
        Ok(())
    }

    fn release(&self, ip: IpAddr) {
        let mut state = self.state.lock().unwrap();
        state.total -= 1;

        // Forget an address once its last session ends, so the map holds
        // only addresses with open sessions and cannot grow without bound.
        if let Entry::Occupied(mut open) = state.per_ip.entry(ip) {
            *open.get_mut() -= 1;
            if *open.get() == 0 {
                open.remove();
            }
        }
    }
}

enum TotalOrIp {
    Total,
    Ip,
}

/// One admitted session. Dropping it frees its places in both counters.
#[derive(Debug)]
pub struct Permit {
    ip: IpAddr,
    global: Arc<Counter>,
    listener: Arc<Counter>,
}

/// Admit a session from `ip` against the global and listener counters.
pub fn admit(
    global: &Arc<Counter>,
    listener: &Arc<Counter>,
    ip: IpAddr,
) -> Result<Permit, LimitHit> {
    global.try_acquire(ip).map_err(|hit| match hit {
        TotalOrIp::Total => LimitHit::Global,
        TotalOrIp::Ip => LimitHit::GlobalPerIp,
    })?;
    if let Err(hit) = listener.try_acquire(ip) {
        global.release(ip);
        return Err(match hit {
            TotalOrIp::Total => LimitHit::Listener,
            TotalOrIp::Ip => LimitHit::ListenerPerIp,
        });
    }

    Ok(Permit {
        ip,
        global: global.clone(),
        listener: listener.clone(),
    })
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.listener.release(self.ip);
        self.global.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limit_leaves_other_addresses_alone() {
        let global = Counter::new(10, 2);
        let listener = Counter::new(10, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();

        let _p1 = admit(&global, &listener, a).unwrap();
        let _p2 = admit(&global, &listener, a).unwrap();
        assert_eq!(
            admit(&global, &listener, a).unwrap_err(),
            LimitHit::GlobalPerIp
        );
        let _p3 = admit(&global, &listener, b).unwrap();
        assert_eq!(global.open(), 3);
    }

    #[test]
    fn refused_listener_admission_returns_the_global_place() {
        let global = Counter::new(10, 10);
        let listener = Counter::new(1, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();

        let first = admit(&global, &listener, a).unwrap();
        assert_eq!(
            admit(&global, &listener, a).unwrap_err(),
            LimitHit::Listener
        );
        assert_eq!(global.open(), 1);

        drop(first);
        assert_eq!(global.open(), 0);
        assert!(global.state.lock().unwrap().per_ip.is_empty());
    }

    #[test]
    fn lowered_maxima_keep_the_count_of_open_sessions() {
        let global = Counter::new(10, 10);
        let listener = Counter::new(10, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let open: Vec<_> = (0..3)
            .map(|_| admit(&global, &listener, a).unwrap())
            .collect();

        // Three open, the limit lowered to two: the next is refused and
        // the three stay counted.
        listener.set_maxima(2, 10);
        assert_eq!(
            admit(&global, &listener, a).unwrap_err(),
            LimitHit::Listener
        );
        assert_eq!(listener.open(), 3);
        assert_eq!(global.open(), 3);

        // Only once two have ended is there room under the new limit.
        drop(open);
        let _again = admit(&global, &listener, a).unwrap();
        let _twice = admit(&global, &listener, a).unwrap();
        assert_eq!(
            admit(&global, &listener, a).unwrap_err(),
            LimitHit::Listener
        );
        assert_eq!(listener.maxima(), (2, 10));
    }

    #[test]
    fn lowered_per_ip_maximum_applies_to_an_address_already_counted() {
        let global = Counter::new(10, 5);
        let listener = Counter::new(10, 10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let _p1 = admit(&global, &listener, a).unwrap();
        let _p2 = admit(&global, &listener, a).unwrap();

        global.set_maxima(10, 2);
        assert_eq!(
            admit(&global, &listener, a).unwrap_err(),
            LimitHit::GlobalPerIp
        );
        global.set_maxima(10, 3);
        let _p3 = admit(&global, &listener, a).unwrap();
    }
}
