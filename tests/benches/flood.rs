//! Flood isolation (issue 14, "Rate limits"): application X floods a gateway while
//! application Y sends signed `/whoami` requests at a steady rate; Y's latency with X idle and
//! with X flooding, on a gateway with the default rate limits' shape (scaled to the run) and on
//! one with rate limits off, in interleaved rounds of the same run. Both gateways run
//! in-process on one real `redis-server` on loopback, over TLS 1.3 / HTTP/2.
//!
//! X's requests are signed before each flood phase (a signature costs about as much as the
//! server's verification, and must not compete with it); X keeps `X_IN_FLIGHT` requests in
//! flight on 4 connections, Y sends `Y_RATE` requests a second (open loop, each on its own
//! stream of one connection). Printed per mode: Y's p50/p99 idle and under flood, their ratio,
//! Y's failures, and what X got (answers by status, per second).
//!
//! Run: `cargo bench --bench flood` (env `ROUNDS` 3, `SECONDS` 20, `Y_RATE` 20,
//! `X_IN_FLIGHT` 64, `X_REQUESTS` 20000 per second of phase, `X_ALLOWED` 60 reads per 2 s
//! window before delays,
//! `X_TURNS` 8). Bounded: per phase `SECONDS` and `X_REQUESTS`. Every caller has the same
//! limits, so Y's rate must stay under `X_ALLOWED` per window.

#[path = "connection.rs"]
mod connection;
#[path = "machine.rs"]
mod machine;
#[allow(dead_code, unused_imports)]
#[path = "../integration/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mimi_gateway::config::{Config, RateClassConfig, RateLimitsConfig};

use connection::http2;
use support::*;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    rounds: usize,
    phase: Duration,
    y_rate: usize,
    x_in_flight: usize,
    x_requests: usize,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// A gateway serving X (`harness.app`) and Y.
struct Subject {
    name: &'static str,
    harness: Harness,
    y: TestApp,
}

async fn subject(name: &'static str, redis: &RedisServer, limits: RateLimitsConfig) -> Subject {
    let y = TestApp::new();
    let y_config = y.config();
    let harness = Harness::start_with(StoreSpec::Redis(redis.url()), move |config: &mut Config| {
        config.applications.push(y_config);
        config.rate_limits = limits;
        config.limits.new_connections_per_ip_per_minute = 0;
    })
    .await;
    Subject { name, harness, y }
}

fn whoami_request(headers: HeaderMap) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri("https://localhost/whoami")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request.headers_mut().extend(headers);
    request
}

fn signed_whoami(app: &TestApp) -> HeaderMap {
    signed_headers(&app.key, app.claims(), &Method::GET, "/whoami", b"")
}

/// `count` signed `/whoami` envelopes of `app`, signed on every core.
fn presign(app: &TestApp, count: usize) -> Vec<HeaderMap> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    (0..count / threads)
                        .map(|_| signed_whoami(app))
                        .collect::<Vec<HeaderMap>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap())
            .collect::<Vec<HeaderMap>>()
    })
}

/// Y's latencies and failures over one phase, while `flood` (if any) runs.
struct Phase {
    y_latencies: Vec<Duration>,
    y_failures: usize,
    x_statuses: BTreeMap<u16, usize>,
    x_elapsed: Duration,
}

async fn phase(subject: &Subject, settings: &Settings, flood: Option<Vec<HeaderMap>>) -> Phase {
    let stop = Instant::now() + settings.phase;
    // X: closed loop over pre-signed requests until they or the phase run out.
    let x_workers = match flood {
        None => Vec::new(),
        Some(envelopes) => {
            let envelopes = Arc::new(std::sync::Mutex::new(envelopes));
            let mut connections = Vec::new();
            for _ in 0..4 {
                connections.push(http2(&subject.harness).await);
            }
            (0..settings.x_in_flight)
                .map(|index| {
                    let mut sender = connections[index % connections.len()].clone();
                    let envelopes = envelopes.clone();
                    tokio::spawn(async move {
                        let mut statuses = BTreeMap::new();
                        while Instant::now() < stop {
                            let Some(headers) = envelopes.lock().unwrap().pop() else {
                                break;
                            };
                            let status = match sender.send_request(whoami_request(headers)).await {
                                Ok(response) => {
                                    let status = response.status().as_u16();
                                    let _ = response.into_body().collect().await;
                                    status
                                }
                                Err(_) => 0,
                            };
                            *statuses.entry(status).or_insert(0) += 1;
                        }
                        (statuses, Instant::now())
                    })
                })
                .collect()
        }
    };
    let started = Instant::now();
    // Y: open loop at its rate on one connection.
    let y_sender = http2(&subject.harness).await;
    let interval = Duration::from_secs_f64(1.0 / settings.y_rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let failures = Arc::new(AtomicUsize::new(0));
    let mut y_requests = Vec::new();
    while Instant::now() < stop {
        ticker.tick().await;
        let mut sender = y_sender.clone();
        let headers = signed_whoami(&subject.y);
        let failures = failures.clone();
        y_requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match sender.send_request(whoami_request(headers)).await {
                Ok(response) => {
                    let ok = response.status() == StatusCode::OK;
                    let _ = response.into_body().collect().await;
                    ok
                }
                Err(_) => false,
            };
            if !ok {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            sent.elapsed()
        }));
    }
    let mut y_latencies = Vec::new();
    for request in y_requests {
        y_latencies.push(request.await.unwrap());
    }
    let mut x_statuses = BTreeMap::new();
    let mut x_end = started;
    for worker in x_workers {
        let (statuses, ended) = worker.await.unwrap();
        x_end = x_end.max(ended);
        for (status, count) in statuses {
            *x_statuses.entry(status).or_insert(0) += count;
        }
    }
    Phase {
        y_latencies,
        y_failures: failures.load(Ordering::Relaxed),
        x_statuses,
        x_elapsed: x_end.saturating_duration_since(started),
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[derive(Default)]
struct Tally {
    idle_all: Vec<Duration>,
    flood_all: Vec<Duration>,
    idle_p50: Vec<f64>,
    idle_p99: Vec<f64>,
    flood_p50: Vec<f64>,
    flood_p99: Vec<f64>,
    y_requests: usize,
    y_failures: usize,
    x_statuses: BTreeMap<u16, usize>,
    x_seconds: f64,
}

async fn run() {
    let settings = Settings {
        rounds: setting("ROUNDS", 3),
        phase: Duration::from_secs(setting("SECONDS", 20) as u64),
        y_rate: setting("Y_RATE", 20),
        x_in_flight: setting("X_IN_FLIGHT", 64),
        // Enough for the whole phase at the unlimited gateway's rate (about 18,000 a second).
        x_requests: setting("X_REQUESTS", 20_000 * setting("SECONDS", 20)),
    };
    let redis = RedisServer::start();
    // The defaults' shape, scaled to a run of a few seconds: in each window of 2 s X's first
    // `X_ALLOWED` reads pass, as many again are delayed, the rest refused. Y sends under it.
    let allowed = setting("X_ALLOWED", 60) as u64;
    let limited = RateLimitsConfig {
        window_secs: 2,
        read: RateClassConfig {
            delay_after: allowed,
            delay_ms: 100,
            reject_after: 2 * allowed,
        },
        concurrent_per_caller: setting("X_TURNS", 8),
        ..RateLimitsConfig::default()
    };
    let off = RateLimitsConfig {
        read: RateClassConfig::default(),
        concurrent_per_caller: 0,
        ..RateLimitsConfig::default()
    };
    let subjects = [
        subject("rate limits on", &redis, limited).await,
        subject("rate limits off", &redis, off).await,
    ];
    let mut tallies: Vec<Tally> = subjects.iter().map(|_| Tally::default()).collect();
    for round in 0..settings.rounds {
        for (subject, tally) in subjects.iter().zip(&mut tallies) {
            // Let the last phase's window end before measuring idle.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut idle = phase(subject, &settings, None).await;
            let envelopes = presign(&subject.harness.app, settings.x_requests);
            let mut flood = phase(subject, &settings, Some(envelopes)).await;
            tally.idle_p50.push(percentile(&mut idle.y_latencies, 0.5));
            tally.idle_p99.push(percentile(&mut idle.y_latencies, 0.99));
            tally
                .flood_p50
                .push(percentile(&mut flood.y_latencies, 0.5));
            tally
                .flood_p99
                .push(percentile(&mut flood.y_latencies, 0.99));
            tally.y_requests += idle.y_latencies.len() + flood.y_latencies.len();
            tally.idle_all.extend(&idle.y_latencies);
            tally.flood_all.extend(&flood.y_latencies);
            tally.y_failures += idle.y_failures + flood.y_failures;
            for (status, count) in flood.x_statuses {
                *tally.x_statuses.entry(status).or_insert(0) += count;
            }
            tally.x_seconds += flood.x_elapsed.as_secs_f64();
            eprintln!(
                "round {round} {}: Y p99 idle {:.2} ms, flood {:.2} ms",
                subject.name,
                tally.idle_p99.last().unwrap(),
                tally.flood_p99.last().unwrap()
            );
        }
    }
    println!("machine: {}", machine::machine());
    println!(
        "flood isolation: X {} in flight (pre-signed /whoami, h2), Y {} req/s (/whoami, h2), {} rounds of {} s phases, medians of the rounds",
        settings.x_in_flight,
        settings.y_rate,
        settings.rounds,
        settings.phase.as_secs()
    );
    for (subject, mut tally) in subjects.iter().zip(tallies) {
        let x_total: usize = tally.x_statuses.values().sum();
        let pooled_idle = percentile(&mut tally.idle_all, 0.99);
        let pooled_flood = percentile(&mut tally.flood_all, 0.99);
        let idle_p99 = median(tally.idle_p99);
        let flood_p99 = median(tally.flood_p99);
        println!(
            "{:<16} Y idle p50 {:>6.2} ms p99 {:>6.2} ms | Y under flood p50 {:>6.2} ms p99 {:>6.2} ms | p99 ratio {:.2}x (all rounds pooled: {:.2} -> {:.2} ms, {:.2}x) | Y failed {}/{} | X {:.0} answers/s, by status {:?}",
            subject.name,
            median(tally.idle_p50),
            idle_p99,
            median(tally.flood_p50),
            flood_p99,
            flood_p99 / idle_p99,
            pooled_idle,
            pooled_flood,
            pooled_flood / pooled_idle,
            tally.y_failures,
            tally.y_requests,
            x_total as f64 / tally.x_seconds.max(1e-9),
            tally.x_statuses
        );
    }
}
