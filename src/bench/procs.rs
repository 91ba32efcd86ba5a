//! The benchmark's processes and readings: `redis-server`, the gateway and the floors as
//! children on loopback (pinned to the last core when `taskset` is there, the load client to
//! the first), each stopped by its PID; CPU time from `/proc/<pid>/stat`; Redis commands from
//! `INFO commandstats`; RSS from `/proc/<pid>/status`; the machine's description.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed (by its PID) when dropped.
pub struct Process {
    pub name: &'static str,
    child: Child,
    /// Where its stdout and stderr go.
    log: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`, e.g.
/// `0-3,8`), read once, before it pins itself.
fn allowed_cpus() -> &'static [usize] {
    static CPUS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CPUS.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let Some(list) = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        else {
            return Vec::new();
        };
        let mut cpus = Vec::new();
        for range in list.trim().split(',') {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(start), Ok(end)) = (start.parse::<usize>(), end.parse::<usize>()) {
                cpus.extend(start..=end.min(start + 4096));
            }
        }
        cpus
    })
}

/// (the load client's CPU, the servers' CPU): the first and the last allowed, when there
/// are two or more and `taskset` exists; `None` when nothing is pinned.
pub fn cores_used() -> Option<(usize, usize)> {
    // Decided once: it asks for `taskset`, and every spawn asks again.
    static USED: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *USED.get_or_init(|| {
        let cpus = allowed_cpus();
        match (cpus.first(), cpus.last()) {
            (Some(first), Some(last)) if first != last && has("taskset") => Some((*first, *last)),
            _ => None,
        }
    })
}

/// The servers' CPU, when pinned.
pub fn server_core() -> Option<usize> {
    cores_used().map(|(_, servers)| servers)
}

/// The CPUs this process was allowed.
pub fn cores() -> usize {
    allowed_cpus().len().max(1)
}

/// Pins this process (the load client, all its threads) to its first allowed CPU.
pub fn pin_self() -> bool {
    let Some((client, _)) = cores_used() else {
        return false;
    };
    Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &client.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts `program args` (on the servers' core), output to `log`.
pub fn spawn(
    name: &'static str,
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> Result<Process, String> {
    // `setpriv --pdeathsig KILL`: the child is killed when the benchmark dies, however it
    // dies (the setting survives taskset's and setpriv's exec of the program).
    let mut wrappers: Vec<String> = Vec::new();
    if has("setpriv") {
        wrappers.extend(["setpriv", "--pdeathsig", "KILL"].map(str::to_owned));
    } else {
        eprintln!(
            "warning: setpriv (util-linux) is missing: {name} outlives the benchmark if it is killed"
        );
    }
    if let Some(core) = server_core() {
        wrappers.extend(["taskset".to_owned(), "-c".to_owned(), core.to_string()]);
    }
    let mut command = match wrappers.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program).args(args);
            command
        }
        None => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    };
    let output =
        std::fs::File::create(log).map_err(|error| format!("{}: {error}", log.display()))?;
    let errors = output.try_clone().map_err(|error| error.to_string())?;
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .map_err(|error| format!("starting {}: {error}", program.display()))?;
    Ok(Process {
        name,
        child,
        log: log.to_owned(),
    })
}

/// Whether a start failed because a port picked free was taken before the process bound
/// it (another program's connection or listener got it meanwhile): worth a new try.
pub fn lost_a_port(error: &str) -> bool {
    error.contains("exited before listening")
        && (error.contains("Address already in use") || error.contains("os error 98"))
}

/// A free loopback port.
pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    Ok(listener
        .local_addr()
        .map_err(|error| error.to_string())?
        .port())
}

/// `N` free loopback ports.
pub fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let mut ports = [0; N];
    for port in &mut ports {
        *port = free_port()?;
    }
    Ok(ports)
}

/// Waits (up to `limit`) until `address` accepts connections.
pub fn wait_listening(
    process: &mut Process,
    address: SocketAddr,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !process.alive() {
            let log = std::fs::read_to_string(&process.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let last = &lines[lines.len().saturating_sub(5)..];
            return Err(format!(
                "{} exited before listening on {address}; the end of {}:\n{}",
                process.name,
                process.log.display(),
                last.join("\n")
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} not listening on {address} after {limit:?}",
                process.name
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-server` on a free loopback port, nothing persisted.
pub fn start_redis(dir: &Path) -> Result<(Process, u16), String> {
    if !has("redis-server") {
        return Err("redis-server is not installed (apt-get install redis-server)".into());
    }
    let port = free_port()?;
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let mut process = spawn(
        "redis-server",
        Path::new("redis-server"),
        &args,
        &[],
        &dir.join("redis.log"),
    )?;
    wait_listening(
        &mut process,
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )?;
    Ok((process, port))
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = clock_ticks_per_second();
    Some(Duration::from_micros(ticks * 1_000_000 / per_second))
}

/// CPU time the processes `pids` have used so far, together; `None` if one is gone.
pub fn cpu_time_of(pids: &[u32]) -> Option<Duration> {
    pids.iter().map(|pid| cpu_time(*pid)).sum()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux when unknown).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// What Redis has done so far and holds.
pub struct RedisCounters {
    /// Calls of every command (`INFO commandstats`), those a script made included.
    pub calls: u64,
    /// Script calls (`EVALSHA`, `EVAL`): with every change one script, about the round
    /// trips a request cost.
    pub scripts: u64,
    /// `used_memory`, bytes.
    pub memory: u64,
}

/// Waits (at most 30 s) until Redis is quiet: fewer than 20 commands in 200 ms (its own
/// INFO readings included), so that a run does not meet what the one before left going
/// (a fan-out's deliveries still on their way, a backlog at a peer). Answers whether it
/// was.
pub async fn quiet(redis: &mut redis::aio::MultiplexedConnection) -> Result<bool, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut before = redis_counters(redis).await?.calls;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = redis_counters(redis).await?.calls;
        if now.saturating_sub(before) < 20 {
            return Ok(true);
        }
        before = now;
    }
    Ok(false)
}

/// Calls of every command so far (`INFO commandstats`), and the memory Redis uses.
pub async fn redis_counters(
    redis: &mut redis::aio::MultiplexedConnection,
) -> Result<RedisCounters, String> {
    let patience = Duration::from_secs(10);
    let stats: String = tokio::time::timeout(
        patience,
        redis::cmd("INFO").arg("commandstats").query_async(redis),
    )
    .await
    .map_err(|_| "INFO commandstats: no answer in 10 s".to_owned())?
    .map_err(|error| format!("INFO commandstats: {error}"))?;
    let calls_of = |line: &str| {
        let (_, rest) = line.split_once("calls=")?;
        rest.split(',').next()?.parse::<u64>().ok()
    };
    let calls = stats.lines().filter_map(calls_of).sum();
    let scripts = stats
        .lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(calls_of)
        .sum();
    let memory: String = tokio::time::timeout(
        patience,
        redis::cmd("INFO").arg("memory").query_async(redis),
    )
    .await
    .map_err(|_| "INFO memory: no answer in 10 s".to_owned())?
    .map_err(|error| format!("INFO memory: {error}"))?;
    let used = memory
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    Ok(RedisCounters {
        calls,
        scripts,
        memory: used,
    })
}

/// The machine the figures come from.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cores();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| format!(", {} GiB", kib / 1024 / 1024));
    format!("{cpu}, {cores} cores{memory}, Linux {kernel}")
}

/// What the gateway's `/metrics` count of its request signatures (src/signatures.rs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Signatures {
    /// Verified in a batch that passed.
    pub batched: u64,
    /// Verified alone (a batch of one, again after a failed batch, or batching off).
    pub alone: u64,
    /// Batches of two or more, passed and failed.
    pub batches: u64,
}

impl Signatures {
    /// What was counted between `before` and `self`.
    pub fn since(self, before: Signatures) -> Signatures {
        Signatures {
            batched: self.batched.saturating_sub(before.batched),
            alone: self.alone.saturating_sub(before.alone),
            batches: self.batches.saturating_sub(before.batches),
        }
    }

    /// E.g. `signatures 93% in batches of 7.4`.
    pub fn describe(&self) -> String {
        let total = (self.batched + self.alone).max(1) as f64;
        format!(
            "signatures {:.0}% in batches of {:.1}",
            self.batched as f64 * 100.0 / total,
            self.batched as f64 / self.batches.max(1) as f64
        )
    }
}

/// The signature counters of the gateway whose admin listener is `admin` (plain HTTP on
/// loopback), or `None` if it does not answer within 2 s.
pub async fn signatures(admin: SocketAddr) -> Option<Signatures> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        Some(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()??;
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Signatures {
        batched: value("mimi_signatures_verified_total{how=\"batch\"}"),
        alone: value("mimi_signatures_verified_total{how=\"alone\"}"),
        batches: value("mimi_signature_batches_total{outcome=\"passed\"}")
            + value("mimi_signature_batches_total{outcome=\"failed\"}"),
    })
}
