//! Request metrics for the admin listener's `/metrics`, in Prometheus text format: counts and
//! latency histograms per listener, endpoint and status, and authentication failures by
//! reason (the reason never goes to the caller; operators see it here and in the log).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

type RequestKey = (&'static str, &'static str, u16);

/// Most per-caller series of `mimi_rate_limited_total` (peers are as many as the domains that
/// serve keys: bounded by this, not by them).
const MAX_CALLER_SERIES: usize = 1_000;

#[derive(Default)]
pub struct Metrics {
    // std Mutexes: held for a few instructions, never across an await.
    requests: Mutex<BTreeMap<RequestKey, Histogram>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections closed at accept, by listener and reason (`per_address`: the address
    /// holds too many; `connection_rate`: it opened too many this minute).
    refused_connections: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Requests of authenticated callers held back, by caller, class and outcome
    /// (`delayed`, `refused`, `concurrency_refused`, `fresh_withheld`).
    rate_limited: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    /// Outbound fan-out attempts by outcome: `delivered`, `retried`, `refused` (dropped).
    fanout: Mutex<BTreeMap<&'static str, u64>>,
    /// Bodies waiting per peer, as the delivery scan last measured them.
    outbound_depths: Mutex<Vec<(String, u64)>>,
    /// Requests answered with a store failure, by outcome (`unavailable`: nothing changed;
    /// `outcome_unknown`: the change may have been applied).
    store_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Request signatures verified: in a batch that passed, and alone.
    signatures_batched: AtomicU64,
    signatures_alone: AtomicU64,
    /// Batches of two or more signatures, passed and failed.
    batches_passed: AtomicU64,
    batches_failed: AtomicU64,
}

impl Metrics {
    pub fn observe_request(
        &self,
        listener: &'static str,
        endpoint: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        if let Ok(mut requests) = self.requests.lock() {
            let histogram = requests.entry((listener, endpoint, status)).or_default();
            histogram.count += 1;
            histogram.sum_seconds += seconds;
            for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
        }
    }

    pub fn count_auth_failure(&self, reason: &'static str) {
        if let Ok(mut failures) = self.auth_failures.lock() {
            *failures.entry(reason).or_default() += 1;
        }
    }

    pub fn count_refused_connection(&self, listener: &'static str, reason: &'static str) {
        if let Ok(mut refused) = self.refused_connections.lock() {
            *refused.entry((listener, reason)).or_default() += 1;
        }
    }

    /// A request of `caller` (`app:<id>`, `peer:<domain>`) of `class` held back by a rate
    /// limit with `outcome`.
    /// At most `MAX_CALLER_SERIES` series name their caller; the rest count as `other`.
    pub fn count_rate_limited(&self, caller: &str, class: &'static str, outcome: &'static str) {
        if let Ok(mut limited) = self.rate_limited.lock() {
            let mut key = (caller.to_owned(), class, outcome);
            if limited.len() >= MAX_CALLER_SERIES && !limited.contains_key(&key) {
                key.0 = "other".to_owned();
            }
            *limited.entry(key).or_default() += 1;
        }
    }

    pub fn count_fanout(&self, outcome: &'static str) {
        if let Ok(mut fanout) = self.fanout.lock() {
            *fanout.entry(outcome).or_default() += 1;
        }
    }

    /// The outbound queues' depths, replacing the last measurement (peers with an empty
    /// queue are not listed; at most `MAX_CALLER_SERIES` peers).
    pub fn set_outbound_depths(&self, mut depths: Vec<(String, u64)>) {
        depths.truncate(MAX_CALLER_SERIES);
        if let Ok(mut kept) = self.outbound_depths.lock() {
            *kept = depths;
        }
    }

    /// One round of signature verification (`crate::signatures`): `batched` signatures in a
    /// batch that passed, `alone` verified one by one; `batch` whether a batch of two or more
    /// was tried, and whether it passed.
    pub fn count_signatures(&self, batched: usize, alone: usize, batch: Option<bool>) {
        self.signatures_batched
            .fetch_add(batched as u64, Ordering::Relaxed);
        self.signatures_alone
            .fetch_add(alone as u64, Ordering::Relaxed);
        match batch {
            Some(true) => self.batches_passed.fetch_add(1, Ordering::Relaxed),
            Some(false) => self.batches_failed.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
    }

    pub fn count_store_error(&self, outcome: &'static str) {
        if let Ok(mut errors) = self.store_errors.lock() {
            *errors.entry(outcome).or_default() += 1;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP mimi_requests_total Requests answered, by listener, endpoint and status.\n",
        );
        out.push_str("# TYPE mimi_requests_total counter\n");
        let requests = self.requests.lock().map(|r| {
            r.iter()
                .map(|(key, h)| (*key, h.count, h.sum_seconds, h.buckets))
                .collect::<Vec<_>>()
        });
        let requests = requests.unwrap_or_default();
        for ((listener, endpoint, status), count, _, _) in &requests {
            let _ = writeln!(
                out,
                "mimi_requests_total{{listener=\"{listener}\",endpoint=\"{endpoint}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP mimi_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE mimi_request_duration_seconds histogram\n");
        for ((listener, endpoint, status), count, sum, buckets) in &requests {
            let labels =
                format!("listener=\"{listener}\",endpoint=\"{endpoint}\",status=\"{status}\"");
            for (bound, bucket) in BUCKETS.iter().zip(buckets) {
                let _ = writeln!(
                    out,
                    "mimi_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {bucket}"
                );
            }
            let _ = writeln!(
                out,
                "mimi_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(out, "mimi_request_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(
                out,
                "mimi_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        out.push_str("# HELP mimi_auth_failures_total Signed requests refused, by reason.\n");
        out.push_str("# TYPE mimi_auth_failures_total counter\n");
        if let Ok(failures) = self.auth_failures.lock() {
            for (reason, count) in failures.iter() {
                let _ = writeln!(
                    out,
                    "mimi_auth_failures_total{{reason=\"{reason}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP mimi_refused_connections_total Connections closed at accept, by reason: per_address (too many open from one address), connection_rate (too many new this minute).\n",
        );
        out.push_str("# TYPE mimi_refused_connections_total counter\n");
        if let Ok(refused) = self.refused_connections.lock() {
            for ((listener, reason), count) in refused.iter() {
                let _ = writeln!(
                    out,
                    "mimi_refused_connections_total{{listener=\"{listener}\",reason=\"{reason}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP mimi_rate_limited_total Requests of authenticated callers delayed or refused by a rate limit, by caller, class and outcome.\n",
        );
        out.push_str("# TYPE mimi_rate_limited_total counter\n");
        if let Ok(limited) = self.rate_limited.lock() {
            for ((caller, class, outcome), count) in limited.iter() {
                let caller = label(caller);
                let _ = writeln!(
                    out,
                    "mimi_rate_limited_total{{caller=\"{caller}\",class=\"{class}\",outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP mimi_fanout_deliveries_total Outbound fan-out attempts to peers, by outcome.\n",
        );
        out.push_str("# TYPE mimi_fanout_deliveries_total counter\n");
        if let Ok(fanout) = self.fanout.lock() {
            for (outcome, count) in fanout.iter() {
                let _ = writeln!(
                    out,
                    "mimi_fanout_deliveries_total{{outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP mimi_outbound_queue_depth Fan-out bodies waiting for a peer.\n");
        out.push_str("# TYPE mimi_outbound_queue_depth gauge\n");
        if let Ok(depths) = self.outbound_depths.lock() {
            for (peer, depth) in depths.iter() {
                let peer = label(peer);
                let _ = writeln!(out, "mimi_outbound_queue_depth{{peer=\"{peer}\"}} {depth}");
            }
        }
        out.push_str(
            "# HELP mimi_store_errors_total Requests answered with a store failure, by outcome.\n",
        );
        out.push_str("# TYPE mimi_store_errors_total counter\n");
        if let Ok(errors) = self.store_errors.lock() {
            for (outcome, count) in errors.iter() {
                let _ = writeln!(
                    out,
                    "mimi_store_errors_total{{outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP mimi_signatures_verified_total Request signatures verified, by how: in a batch that passed, or alone (a batch of one, again after a failed batch, or batching off).\n",
        );
        out.push_str("# TYPE mimi_signatures_verified_total counter\n");
        for (how, count) in [
            ("batch", &self.signatures_batched),
            ("alone", &self.signatures_alone),
        ] {
            let count = count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "mimi_signatures_verified_total{{how=\"{how}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP mimi_signature_batches_total Batches of two or more request signatures, by outcome (a failed one is verified again signature by signature).\n",
        );
        out.push_str("# TYPE mimi_signature_batches_total counter\n");
        for (outcome, count) in [
            ("passed", &self.batches_passed),
            ("failed", &self.batches_failed),
        ] {
            let count = count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "mimi_signature_batches_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        out
    }
}

/// A label value as Prometheus' text format writes it (backslash, quote, newline escaped).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_buckets_and_auth_reasons() {
        let metrics = Metrics::default();
        metrics.observe_request("federation", "ds_domain", 200, Duration::from_millis(3));
        metrics.observe_request("federation", "ds_domain", 200, Duration::from_millis(30));
        metrics.count_auth_failure("replayed_request_id");
        let text = metrics.render();
        let labels = "listener=\"federation\",endpoint=\"ds_domain\",status=\"200\"";
        assert!(text.contains(&format!("mimi_requests_total{{{labels}}} 2")));
        assert!(text.contains(&format!(
            "mimi_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "mimi_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2"
        )));
        assert!(text.contains("mimi_auth_failures_total{reason=\"replayed_request_id\"} 1"));
    }

    #[test]
    fn renders_outbound_depths_and_store_errors() {
        let metrics = Metrics::default();
        let text = metrics.render();
        assert!(text.contains("# TYPE mimi_outbound_queue_depth gauge"));
        assert!(text.contains("# TYPE mimi_store_errors_total counter"));
        metrics.set_outbound_depths(vec![("b.example".into(), 7)]);
        metrics.count_store_error("unavailable");
        metrics.count_store_error("unavailable");
        let text = metrics.render();
        assert!(text.contains("mimi_outbound_queue_depth{peer=\"b.example\"} 7"));
        assert!(text.contains("mimi_store_errors_total{outcome=\"unavailable\"} 2"));
        // Label values are escaped: a peer name cannot break the scrape.
        metrics.set_outbound_depths(vec![("b\"x\ny".into(), 1)]);
        assert!(
            metrics
                .render()
                .contains("mimi_outbound_queue_depth{peer=\"b\\\"x\\ny\"} 1")
        );
        // A new measurement replaces the last: a drained peer is gone.
        metrics.set_outbound_depths(Vec::new());
        assert!(!metrics.render().contains("b.example"));
    }
}
