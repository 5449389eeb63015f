//! Throttling of failed sign-ins per client address (an IPv6 client's /64), so credentials cannot
//! be guessed at line rate. Each address has a budget of failures that refills over a minute (a
//! token bucket); once it is spent, every request from that address that presents credentials is refused with the
//! plane's throttling error (`429 TOOMANYREQUESTS` on `/v2/`, `ThrottlingException` on the ECR
//! API) until the budget refills — refused *before* the credentials are checked, so a guesser
//! learns nothing more. Requests without credentials are never throttled here: they cannot guess.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once; beyond it, addresses whose budget has refilled are forgotten first.
const MAX_TRACKED: usize = 65_536;

/// The longest wait failures past the budget add up to.
const MAX_LOCKOUT_MINUTES: f64 = 60.0;

/// The `reason` labels of refusals that are guesses at a secret (not denials of a valid caller).
const GUESSES: [&str; 3] = ["invalid_credentials", "unrecognized_client", "invalid_signature"];

pub struct LoginThrottle {
    /// Failures an address may have in a burst, and regains per minute.
    per_minute: f64,
    clients: Mutex<HashMap<IpAddr, Budget>>,
}

#[derive(Clone, Copy)]
struct Budget {
    failures_left: f64,
    updated: Instant,
}

impl LoginThrottle {
    /// `None` when `per_minute` is 0 (throttling off).
    pub fn new(per_minute: u32) -> Option<LoginThrottle> {
        (per_minute > 0).then(|| LoginThrottle { per_minute: per_minute.into(), clients: Mutex::new(HashMap::new()) })
    }

    /// Whether a refusal (its metrics `reason`) counts against the address's budget.
    pub fn counts(reason: &str) -> bool {
        GUESSES.contains(&reason)
    }

    /// How long `client` must wait before its credentials are looked at again; `None`: go ahead.
    pub fn refused(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let client = berth_iam::client_network(client);
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let budget = self.refilled(*clients.get(&client)?, now);
        (budget.failures_left < 1.0)
            .then(|| Duration::from_secs_f64((1.0 - budget.failures_left) * 60.0 / self.per_minute))
    }

    pub fn record_failure(&self, client: IpAddr, now: Instant) {
        let client = berth_iam::client_network(client);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_TRACKED && !clients.contains_key(&client) {
            clients.retain(|_, budget| self.refilled(*budget, now).failures_left < self.per_minute);
            if clients.len() >= MAX_TRACKED {
                // Every tracked address is still paying off failures; keep them rather than forget one.
                return;
            }
        }
        let budget = clients
            .get(&client)
            .map_or(Budget { failures_left: self.per_minute, updated: now }, |b| self.refilled(*b, now));
        // Below 0: guesses sent together are all checked before the first failure is recorded
        // (an ECR signature or the console's form waits for a body the guesser paces), so each
        // one still costs its wait — up to an hour's: a burst must not lock everyone behind the
        // address (a NAT, an unlisted proxy) out for longer.
        let failures_left = (budget.failures_left - 1.0).max(-self.per_minute * MAX_LOCKOUT_MINUTES);
        clients.insert(client, Budget { failures_left, updated: now });
    }

    fn refilled(&self, budget: Budget, now: Instant) -> Budget {
        let regained = now.saturating_duration_since(budget.updated).as_secs_f64() * self.per_minute / 60.0;
        Budget { failures_left: (budget.failures_left + regained).min(self.per_minute), updated: now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn an_address_is_refused_after_its_budget_and_let_in_as_it_refills() {
        let throttle = LoginThrottle::new(3).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.refused(address(1), start), None);
            throttle.record_failure(address(1), start);
        }
        let wait = throttle.refused(address(1), start).expect("the fourth try is throttled");
        assert_eq!(wait, Duration::from_secs(20), "one failure comes back every 60/3 s");
        assert_eq!(throttle.refused(address(2), start), None, "other addresses are not affected");
        assert!(throttle.refused(address(1), start + Duration::from_secs(19)).is_some());
        assert_eq!(throttle.refused(address(1), start + Duration::from_secs(20)), None);
        throttle.record_failure(address(1), start + Duration::from_secs(20));
        assert!(throttle.refused(address(1), start + Duration::from_secs(20)).is_some(), "one regained, one spent");
    }

    #[test]
    fn failures_past_the_budget_each_cost_their_wait() {
        let throttle = LoginThrottle::new(30).unwrap();
        let start = Instant::now();
        // 200 guesses checked together, recorded after: 170 past the budget.
        for _ in 0..200 {
            throttle.record_failure(address(1), start);
        }
        let wait = throttle.refused(address(1), start).expect("throttled");
        assert_eq!(wait, Duration::from_secs(342), "171 failures to regain at 2 s each");
        assert!(throttle.refused(address(1), start + Duration::from_secs(341)).is_some());
        assert_eq!(throttle.refused(address(1), start + Duration::from_secs(342)), None);
        // A burst of thousands waits an hour at most.
        for _ in 0..5000 {
            throttle.record_failure(address(2), start);
        }
        let wait = throttle.refused(address(2), start).expect("throttled");
        assert_eq!(wait, Duration::from_secs(3602), "an hour of failures and the one to regain");
    }

    #[test]
    fn an_ipv6_network_is_one_client() {
        let throttle = LoginThrottle::new(1).unwrap();
        let start = Instant::now();
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        throttle.record_failure(v6("2001:db8:1:2::1"), start);
        assert!(throttle.refused(v6("2001:db8:1:2:ffff::7"), start).is_some(), "same /64, same budget");
        assert_eq!(throttle.refused(v6("2001:db8:1:3::1"), start), None, "another /64 is another client");
    }

    #[test]
    fn zero_turns_it_off_and_only_guesses_count() {
        assert!(LoginThrottle::new(0).is_none());
        assert!(LoginThrottle::counts("invalid_credentials"));
        assert!(LoginThrottle::counts("invalid_signature"));
        assert!(!LoginThrottle::counts("access_denied"), "a valid caller denied an action is not guessing");
        assert!(!LoginThrottle::counts("token_expired"), "an old docker login is not guessing");
    }

    #[test]
    fn memory_stays_bounded_by_forgetting_refilled_addresses() {
        let throttle = LoginThrottle::new(2).unwrap();
        let start = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            throttle.record_failure(IpAddr::from(i.to_be_bytes()), start);
        }
        let later = start + Duration::from_secs(60);
        throttle.record_failure(address(9), later);
        let tracked = throttle.clients.lock().unwrap().len();
        assert_eq!(tracked, 1, "the refilled addresses were forgotten, the new one kept");
    }
}
