//! The offered-load sweep of `mimi-gateway bench` (issue 17, "latency against offered
//! load"): after the rounds, each request scenario (tls, signed, key-package, handshakes,
//! resumed) runs again at fixed offered rates, fractions of its floor's peak req/s in the
//! rounds, against the gateway and against that floor, one after the other at each rate;
//! each fan-out at fractions of the messages a second that reached the last queue in the
//! rounds, over the two gateways. Requests are paced (request `i` is due at `i / rate`, at
//! most `in_flight` at once) and a latency counts from when the request was due, so waiting
//! behind a saturated server is in it. The points go to a CSV and to one PNG chart per
//! scenario (`chart`). Commits are not swept: a group's commits are serial, each made for
//! the epoch before, so their load is the number of groups, not a rate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::RunOutcome;
use super::{Scenario, ms};

/// The scenarios a sweep runs: all but the commits.
pub fn sweeps(scenario: Scenario) -> bool {
    !matches!(scenario, Scenario::Commit(_))
}

/// One paced run: a scenario, a target, the rate offered and what came of it.
pub struct Point {
    pub scenario: Scenario,
    /// `gateway`, `bare`, `signed-floor` or (a fan-out) `gateways`.
    pub target: &'static str,
    /// Requests offered per second.
    pub offered: f64,
    pub outcome: RunOutcome,
}

impl Point {
    /// The run's line in the output.
    pub fn describe(&self) -> String {
        format!(
            "sweep {:<19} {:<13} offered {:>8.0}/s  answered {:>8.0}/s  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  unsent {:>6}{}  errors {:?}",
            self.scenario.name(),
            self.target,
            self.offered,
            self.outcome.per_second(),
            ms(self.outcome.percentile(0.50)),
            ms(self.outcome.percentile(0.90)),
            ms(self.outcome.percentile(0.99)),
            self.outcome.unsent,
            if self.outcome.unsent > 0 {
                " (saturated: latencies are a lower bound)"
            } else {
                ""
            },
            self.outcome.errors()
        )
    }
}

/// The most requests one sweep run prepares: past it a run offers fewer than its rate
/// asks for (its `answered` then shows it), but the memory and the signing beforehand stay
/// bounded.
pub const MOST: usize = 500_000;

/// How many requests a run at `rate` for `seconds` offers (at least one, at most `MOST`).
pub fn count(rate: f64, seconds: f64) -> usize {
    ((rate * seconds).ceil() as usize).clamp(1, MOST)
}

/// The spacing of requests offered at `rate` a second.
pub fn every(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate.max(1e-3))
}

/// Writes the points to `bench-<stamp>-sweep.csv` in `out`.
pub fn write_csv(out: &Path, stamp: u64, points: &[Point]) -> Result<PathBuf, String> {
    let mut text = String::from(
        "scenario,target,offered_per_s,answered_per_s,answered,seconds,p50_ms,p90_ms,p99_ms,errors,unsent\n",
    );
    for point in points {
        let errors: u64 = point.outcome.errors().values().sum();
        text.push_str(&format!(
            "{},{},{:.1},{:.1},{},{:.3},{:.3},{:.3},{:.3},{},{}\n",
            point.scenario.name(),
            point.target,
            point.offered,
            point.outcome.per_second(),
            point.outcome.answered(),
            point.outcome.elapsed.as_secs_f64(),
            ms(point.outcome.percentile(0.50)),
            ms(point.outcome.percentile(0.90)),
            ms(point.outcome.percentile(0.99)),
            errors,
            point.outcome.unsent,
        ));
    }
    super::write_out(out, &format!("bench-{stamp}-sweep.csv"), &text)
}
