//! Limits on what one caller may ask for (issue 14, "Rate limits"; DESIGN.md "Peer and
//! application authentication"). Before authentication only a client's address is known:
//! failed authentications and new connections are counted per address, in this process.
//! After it, per authenticated caller (an application, a peer domain) and class of endpoint:
//! requests in fixed windows counted in the store with the request's replay record (so
//! every process sharing the store counts together), delayed past one threshold and refused
//! past another (Matrix's `rc_federation`); requests handled at once per caller, in this
//! process; and fresh key-package assignments per receiver and per caller.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{RateClassConfig, RateLimitsConfig};
use crate::store::RequestWindow;

/// Most addresses or callers tracked in one table; past it, entries that are done go first.
const MAX_TRACKED: usize = 100_000;

/// What per-address limits count by: an IPv4 address, or the /64 of an IPv6 one (one host
/// or site usually holds a whole /64, so counting per /128 would limit nothing).
pub fn address_key(address: std::net::IpAddr) -> std::net::IpAddr {
    match address.to_canonical() {
        std::net::IpAddr::V6(v6) => std::net::IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !(u128::MAX >> 64),
        )),
        v4 => v4,
    }
}

/// A peer domain as the store's replay records and rate counters name it (in lower case).
pub fn peer_scope(peer: &str) -> String {
    format!("peer:{}", peer.to_ascii_lowercase())
}

/// The rate counter a request is counted in with its replay record.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpec {
    pub name: &'static str,
    pub window_secs: u64,
    pub now: u64,
}

/// Events per client address (an IPv4 address or an IPv6 /64, [`address_key`]) in fixed
/// one-minute windows: failed authentications, new connections.
pub struct PerAddressPerMinute {
    per_minute: u32,
    // A std Mutex: held for a lookup or an increment, never across an await.
    windows: Mutex<AddressWindows>,
}

#[derive(Default)]
struct AddressWindows {
    counts: HashMap<IpAddr, (Instant, u32)>,
    /// When ended windows were last forgotten: at most once a second, so a full table does
    /// not cost a scan per event.
    swept: Option<Instant>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl PerAddressPerMinute {
    /// At most `per_minute` events per address; 0: no limit.
    pub fn new(per_minute: u32) -> PerAddressPerMinute {
        PerAddressPerMinute {
            per_minute,
            windows: Default::default(),
        }
    }

    /// `Some(seconds to wait)` if `address` used up its events for this minute.
    pub fn refused(&self, address: IpAddr) -> Option<u64> {
        if self.per_minute == 0 {
            return None;
        }
        let windows = self.windows.lock().ok()?;
        let (start, count) = windows.counts.get(&address_key(address))?;
        let elapsed = start.elapsed();
        (elapsed < MINUTE && *count >= self.per_minute)
            .then(|| 60u64.saturating_sub(elapsed.as_secs()).max(1))
    }

    /// Counts one event of `address`.
    pub fn record(&self, address: IpAddr) {
        if self.per_minute == 0 {
            return;
        }
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        let key = address_key(address);
        if windows.counts.len() >= MAX_TRACKED && !windows.counts.contains_key(&key) {
            if windows
                .swept
                .is_none_or(|swept| swept.elapsed() >= Duration::from_secs(1))
            {
                windows
                    .counts
                    .retain(|_, (start, _)| start.elapsed() < MINUTE);
                windows.swept = Some(Instant::now());
            }
            // Still full of live windows (addresses from a whole network): a new address
            // is not tracked until room comes, rather than growing the table.
            if windows.counts.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = windows.counts.entry(key).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= MINUTE {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// Counts one event of `address` unless its minute is used up: `false` then.
    pub fn admit(&self, address: IpAddr) -> bool {
        if self.refused(address).is_some() {
            return false;
        }
        self.record(address);
        true
    }
}

/// `delay` spread over half to one and a half times itself: delayed and refused requests of
/// a caller with many in flight come back spread out, not as one wave that sends the next
/// wave in at once (each wave would stall everyone else for its length).
pub fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + rand::random::<f64>())
}

/// The class an endpoint's requests are counted in (`rate_limits.read`, `.write`,
/// `.key_packages`); `None` for endpoints that need no signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    Read = 0,
    Write = 1,
    KeyPackages = 2,
}

impl RateClass {
    /// The name of the class's counter in the store and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            RateClass::Read => "requests:read",
            RateClass::Write => "requests:write",
            RateClass::KeyPackages => "requests:key_packages",
        }
    }

    fn config(self, limits: &RateLimitsConfig) -> &RateClassConfig {
        match self {
            RateClass::Read => &limits.read,
            RateClass::Write => &limits.write,
            RateClass::KeyPackages => &limits.key_packages,
        }
    }
}

/// What a request's count in its window means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Handled after this delay.
    Delay(Duration),
    /// Refused (429); the window ends in this many seconds.
    Refuse {
        retry_after_secs: u64,
    },
}

/// One semaphore per caller, made on first use with its permits; when the table is full,
/// callers with nothing held (only the table holds their semaphore) are forgotten.
#[derive(Default)]
struct PerCaller(Mutex<HashMap<String, Arc<Semaphore>>>);

impl PerCaller {
    fn of(&self, caller: &str, permits: usize) -> Arc<Semaphore> {
        let mut table = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if table.len() >= MAX_TRACKED {
            table.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        }
        table
            .entry(caller.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }
}

/// The caller limits of one gateway process.
pub struct CallerLimits {
    config: RateLimitsConfig,
    /// Requests being handled per caller (`concurrent_per_caller`).
    handling: PerCaller,
    /// Body bytes each caller holds once authenticated, at most `body_share` of them: one
    /// caller cannot keep the whole shared body budget while its requests wait or run.
    body_bytes: PerCaller,
    body_share: usize,
    /// Counters this process saw reach their fresh key-package cap, with the window they
    /// reached it in: until it ends, no fresh package is assigned for them.
    fresh_capped: Mutex<HashMap<String, u64>>,
    /// (caller, class) this process saw refused, with the window: until it ends their
    /// requests are refused as soon as the envelope names them, before the body is read or
    /// the signature verified (a forged request naming a refused caller is refused with it).
    /// Keyed by caller alone, so that the check before the body allocates nothing; one
    /// window per class (`RateClass as usize`).
    refused: Mutex<HashMap<String, [Option<u64>; 3]>>,
}

impl CallerLimits {
    /// `body_budget`: `limits.body_memory_budget_bytes`; each caller may hold a quarter of
    /// it (at least one body of `max_body` bytes).
    pub fn new(config: &RateLimitsConfig, body_budget: usize, max_body: usize) -> CallerLimits {
        CallerLimits {
            config: config.clone(),
            handling: Default::default(),
            body_bytes: Default::default(),
            body_share: (body_budget / 4).max(max_body),
            fresh_capped: Default::default(),
            refused: Default::default(),
        }
    }

    fn window_index(&self, now: u64) -> u64 {
        now / self.config.window_secs.max(1)
    }

    fn remaining_secs(&self, class: RateClass, now: u64) -> u64 {
        RequestWindow {
            name: class.name(),
            window_secs: self.config.window_secs,
            now,
        }
        .remaining_secs()
    }

    /// How long a refusal of `class` is held before it is answered (the class's `delay_ms`):
    /// a caller that keeps sending past its limit gets its answers no faster than its
    /// delayed requests did, so its refusals cost next to nothing.
    pub fn refusal_delay(&self, class: RateClass) -> Duration {
        Duration::from_millis(class.config(&self.config).delay_ms)
    }

    /// `Some(seconds to wait)` if this process refused `scope`'s requests of `class` in the
    /// window holding `now`: the request is refused before any work on it.
    pub fn refused_before(&self, scope: &str, class: RateClass, now: u64) -> Option<u64> {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (refused
            .get(scope)
            .and_then(|windows| windows[class as usize])
            == Some(self.window_index(now)))
        .then(|| self.remaining_secs(class, now))
    }

    /// The verdict on `scope`'s `count`th request of `class` in the window holding `now`; a
    /// refusal is remembered for `refused_before` until the window ends.
    pub fn judge_caller(&self, scope: &str, class: RateClass, count: u64, now: u64) -> Verdict {
        let verdict = self.judge(class, count, now);
        if let Verdict::Refuse { .. } = verdict {
            let index = self.window_index(now);
            let mut refused = self
                .refused
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if refused.len() >= MAX_TRACKED {
                refused.retain(|_, windows| windows.iter().flatten().any(|at| *at >= index));
            }
            refused.entry(scope.to_owned()).or_default()[class as usize] = Some(index);
        }
        verdict
    }

    /// The window a request of `class` is counted in at `now`.
    pub fn window(&self, class: RateClass, now: u64) -> WindowSpec {
        WindowSpec {
            name: class.name(),
            window_secs: self.config.window_secs,
            now,
        }
    }

    /// The highest count of `class` whose verdict is `Go`: a store step that counts the
    /// request itself (`store::RequestRecord`) works up to it and leaves higher counts to
    /// [`Self::judge_caller`].
    pub fn go_up_to(&self, class: RateClass) -> u64 {
        let limits = class.config(&self.config);
        [limits.delay_after, limits.reject_after]
            .into_iter()
            .filter(|threshold| *threshold > 0)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The verdict on the `count`th request of `class` in the window holding `now`.
    pub fn judge(&self, class: RateClass, count: u64, now: u64) -> Verdict {
        let limits = class.config(&self.config);
        if limits.reject_after > 0 && count > limits.reject_after {
            return Verdict::Refuse {
                retry_after_secs: self.remaining_secs(class, now),
            };
        }
        if limits.delay_after > 0 && count > limits.delay_after {
            return Verdict::Delay(Duration::from_millis(limits.delay_ms));
        }
        Verdict::Go
    }

    /// `bytes` of `caller`'s share of the body budget, held with the request's body; `None`
    /// when the caller holds its whole share already (the request is refused, and others'
    /// are not).
    pub fn hold_body(&self, caller: &str, bytes: u32) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.body_bytes.of(caller, self.body_share);
        semaphore.try_acquire_many_owned(bytes).ok()
    }

    /// A turn among `caller`'s requests handled at once, waiting up to
    /// `concurrency_wait_ms`; `Err(())` when none came (the request is refused), `Ok(None)`
    /// when there is no such limit.
    pub async fn enter(&self, caller: &str) -> Result<Option<OwnedSemaphorePermit>, ()> {
        let per_caller = self.config.concurrent_per_caller;
        if per_caller == 0 {
            return Ok(None);
        }
        let semaphore = self.handling.of(caller, per_caller);
        let wait = Duration::from_millis(self.config.concurrency_wait_ms);
        match tokio::time::timeout(wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(()),
        }
    }

    fn fresh_counters(&self, receiver: &str) -> [(String, u64); 2] {
        [
            (
                "fresh".to_owned(),
                self.config.fresh_key_packages_per_caller,
            ),
            (
                format!("fresh:{receiver}"),
                self.config.fresh_key_packages_per_receiver,
            ),
        ]
    }

    /// Whether a fresh key package may be assigned to `receiver` of `scope` (the caller) at
    /// `now`: not once this process saw either count reach its cap in this window.
    pub fn may_assign_fresh(&self, scope: &str, receiver: &str, now: u64) -> bool {
        let index = now / self.config.key_package_window_secs.max(1);
        let capped = self
            .fresh_capped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.fresh_counters(receiver)
            .iter()
            .all(|(name, cap)| *cap == 0 || capped.get(&format!("{scope} {name}")) != Some(&index))
    }

    /// The counters a fresh assignment to `receiver` adds one to (those with a cap), and
    /// their window: what the store counts in the retrieval's own step.
    pub fn fresh_counter_names(&self, receiver: &str) -> (Vec<(String, u64)>, u64) {
        (
            self.fresh_counters(receiver)
                .into_iter()
                .filter(|(_, cap)| *cap > 0)
                .collect(),
            self.config.key_package_window_secs,
        )
    }

    /// The counts of a fresh assignment (shared by every process, in the order of
    /// [`Self::fresh_counter_names`]): a count that reached its cap stops fresh assignments
    /// here until the window ends. Other processes learn it from their own next count, so
    /// the cap is exceeded by at most one assignment per process.
    pub fn note_fresh_counts(
        &self,
        scope: &str,
        counters: &[(String, u64)],
        counts: &[u64],
        now: u64,
    ) {
        let index = now / self.config.key_package_window_secs.max(1);
        let mut capped = self
            .fresh_capped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if capped.len() >= MAX_TRACKED {
            capped.retain(|_, at| *at >= index);
        }
        for ((name, cap), count) in counters.iter().zip(counts) {
            if count >= cap {
                capped.insert(format!("{scope} {name}"), index);
            }
        }
    }

    /// Seconds until the key-package window holding `now` ends.
    pub fn fresh_retry_after(&self, now: u64) -> u64 {
        RequestWindow {
            name: "fresh",
            window_secs: self.config.key_package_window_secs,
            now,
        }
        .remaining_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CallerLimits {
        let config = RateLimitsConfig {
            window_secs: 10,
            write: RateClassConfig {
                delay_after: 3,
                delay_ms: 250,
                reject_after: 5,
            },
            read: RateClassConfig::default(),
            fresh_key_packages_per_receiver: 2,
            fresh_key_packages_per_caller: 3,
            key_package_window_secs: 60,
            ..RateLimitsConfig::default()
        };
        CallerLimits::new(&config, 4 << 20, 1 << 20)
    }

    #[test]
    fn requests_are_delayed_past_the_first_threshold_and_refused_past_the_second() {
        let limits = limits();
        let now = 1_000_003;
        assert_eq!(limits.judge(RateClass::Write, 3, now), Verdict::Go);
        assert_eq!(
            limits.judge(RateClass::Write, 4, now),
            Verdict::Delay(Duration::from_millis(250))
        );
        assert_eq!(
            limits.judge(RateClass::Write, 5, now),
            Verdict::Delay(Duration::from_millis(250))
        );
        assert_eq!(
            limits.judge(RateClass::Write, 6, now),
            Verdict::Refuse {
                retry_after_secs: 7
            }
        );
        // Thresholds of 0 are off.
        assert_eq!(limits.judge(RateClass::Read, 1_000_000, now), Verdict::Go);
    }

    #[test]
    fn go_up_to_is_the_last_count_judged_go() {
        let limits = limits();
        let now = 1_000_003;
        assert_eq!(limits.go_up_to(RateClass::Write), 3);
        for count in 1..10 {
            assert_eq!(
                limits.judge(RateClass::Write, count, now) == Verdict::Go,
                count <= limits.go_up_to(RateClass::Write),
            );
        }
        assert_eq!(limits.go_up_to(RateClass::Read), u64::MAX);
    }

    #[test]
    fn a_refused_caller_is_refused_before_any_work_until_the_window_ends() {
        let limits = limits();
        let now = 1_000_003;
        assert_eq!(limits.refused_before("app:x", RateClass::Write, now), None);
        limits.judge_caller("app:x", RateClass::Write, 5, now);
        assert_eq!(limits.refused_before("app:x", RateClass::Write, now), None);
        limits.judge_caller("app:x", RateClass::Write, 6, now);
        assert_eq!(
            limits.refused_before("app:x", RateClass::Write, now),
            Some(7)
        );
        assert_eq!(limits.refused_before("app:x", RateClass::Read, now), None);
        assert_eq!(limits.refused_before("app:y", RateClass::Write, now), None);
        assert_eq!(
            limits.refused_before("app:x", RateClass::Write, now + 7),
            None
        );
    }

    /// What a retrieval's fresh assignment does: the store counts, the limits note it.
    async fn count_fresh(
        limits: &CallerLimits,
        store: &crate::store::memory::MemoryStore,
        scope: &str,
        receiver: &str,
        now: u64,
    ) {
        use crate::store::RateCounters as _;
        let (counters, window_secs) = limits.fresh_counter_names(receiver);
        let names: Vec<&str> = counters.iter().map(|(name, _)| name.as_str()).collect();
        let counts = store
            .count_in_window(scope, &names, window_secs, now)
            .await
            .unwrap();
        limits.note_fresh_counts(scope, &counters, &counts, now);
    }

    #[tokio::test]
    async fn fresh_assignments_stop_at_the_receivers_cap_and_the_callers() {
        let limits = limits();
        let store = crate::store::memory::MemoryStore::default();
        let now = 600;
        assert!(limits.may_assign_fresh("app:a", "r1", now));
        count_fresh(&limits, &store, "app:a", "r1", now).await;
        assert!(limits.may_assign_fresh("app:a", "r1", now));
        count_fresh(&limits, &store, "app:a", "r1", now).await;
        assert!(!limits.may_assign_fresh("app:a", "r1", now), "receiver cap");
        assert!(limits.may_assign_fresh("app:a", "r2", now));
        count_fresh(&limits, &store, "app:a", "r2", now).await;
        assert!(!limits.may_assign_fresh("app:a", "r3", now), "caller cap");
        assert!(limits.may_assign_fresh("app:b", "r1", now), "per caller");
        assert!(
            limits.may_assign_fresh("app:a", "r3", now + 60),
            "next window"
        );
    }

    #[test]
    fn a_caller_holds_at_most_its_share_of_the_body_budget() {
        let limits = limits();
        let first = limits.hold_body("app:x", 1 << 20);
        assert!(first.is_some());
        assert!(
            limits.hold_body("app:x", 1).is_none(),
            "x's share is used up"
        );
        assert!(
            limits.hold_body("app:y", 1 << 20).is_some(),
            "y has its own"
        );
        drop(first);
        assert!(limits.hold_body("app:x", 1 << 20).is_some(), "given back");
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half_times() {
        for _ in 0..1_000 {
            let delay = jittered(Duration::from_millis(100));
            assert!((Duration::from_millis(50)..=Duration::from_millis(150)).contains(&delay));
        }
    }

    #[test]
    fn address_minutes_admit_up_to_their_count() {
        let table = PerAddressPerMinute::new(2);
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(table.admit(address));
        assert!(table.admit(address));
        assert!(!table.admit(address));
        assert!(table.admit("192.0.2.2".parse().unwrap()));
        assert!(PerAddressPerMinute::new(0).admit(address));
    }

    #[test]
    fn addresses_are_counted_per_ipv4_address_and_ipv6_64() {
        let key = |text: &str| address_key(text.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
    }
}
