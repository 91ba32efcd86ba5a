//! Issue 17, "Load generator (in the tree)": `mimi-gateway bench` runs the way a developer
//! runs it, here tiny and bounded (one round, one second a run, a few hundred requests): it
//! starts its own redis-server, gateway and floors on loopback, every scenario gets answers
//! and no errors from the gateway and from its floor, the summary names each ratio, the CSV
//! holds every run, and the processes it started are gone when it exits. No figure is
//! asserted: timings belong to the benchmark's own output.

use std::process::Command;

fn bench(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The files the benchmark wrote into `out` whose names end with `suffix`.
fn written(out: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect()
}

/// The CSV of the rounds' runs the benchmark wrote into `out`.
fn csv_text(out: &std::path::Path) -> String {
    let csv = written(out, ".csv")
        .into_iter()
        .find(|path| !path.to_string_lossy().ends_with("-sweep.csv"))
        .expect("a CSV");
    std::fs::read_to_string(csv).unwrap()
}

/// A sweep run's CSV row (`scenario,target,offered_per_s,answered_per_s,answered,seconds,
/// ...,errors,unsent`) of a run of `limit` seconds: answers and no errors, at most what its
/// rate offers in that time, and paced: it lasted at least until its last answered request
/// was due, (answered - 1) / offered (unpaced, the requests go at once).
fn assert_paced(row: &[&str], limit: f64) {
    let offered: f64 = row[2].parse().unwrap();
    let answered: f64 = row[4].parse().unwrap();
    let seconds: f64 = row[5].parse().unwrap();
    assert!(answered >= 1.0, "{row:?}");
    assert!(answered <= (offered * limit).ceil() + 1.0, "{row:?}");
    assert!(
        seconds + 0.002 >= (answered - 1.0) / offered,
        "paced: {row:?}"
    );
    assert_eq!(row[9], "0", "no errors: {row:?}");
}

/// The PIDs a line of `stdout` starting with `prefix` names (`name PID, name PID`).
fn named_pids(stdout: &str, prefix: &str) -> Vec<u32> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("`{prefix}` in {stdout}"))
        .split(", ")
        .map(|part| part.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// The process is gone, or its number was taken by another program since (not one of
/// ours).
fn assert_gone(pid: u32) {
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default();
    assert!(
        !command.contains("mimi-bench-") && !command.starts_with("redis-server 127.0.0.1"),
        "process {pid} left running: {command}"
    );
}

#[test]
fn the_load_generator_runs_every_scenario_against_its_floor() {
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = bench(&[
        "--rounds",
        "1",
        "--seconds",
        "1",
        "--requests",
        "300",
        "--key-packages",
        "100",
        "--in-flight",
        "8",
        "--connections",
        "2",
        "--sweep",
        "0.5,1",
        "--sweep-seconds",
        "0.5",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    // Every run line: answers and no errors.
    let runs: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("round 1 "))
        .collect();
    assert_eq!(
        runs.len(),
        9,
        "tls, signed, handshakes, resumed x2, key-package: {stdout}"
    );
    for (scenario, target) in [
        ("tls", "bare"),
        ("tls", "gateway"),
        ("signed", "signed-floor"),
        ("signed", "gateway"),
        ("key-package", "gateway"),
        ("handshakes", "bare"),
        ("handshakes", "gateway"),
        ("resumed", "bare"),
        ("resumed", "gateway"),
    ] {
        let line = runs
            .iter()
            .find(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.get(2) == Some(&scenario) && words.get(3) == Some(&target)
            })
            .unwrap_or_else(|| panic!("{scenario} {target} in {stdout}"));
        assert!(line.ends_with("errors {}"), "{line}");
        let per_second: f64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
        assert!(per_second > 0.0, "{line}");
    }
    // How the gateway verified the signed runs' signatures, from its /metrics.
    for scenario in ["signed", "key-package"] {
        let line = runs
            .iter()
            .find(|line| line.starts_with(&format!("round 1 {scenario:<12} gateway")))
            .unwrap();
        assert!(line.contains("% in batches of "), "{line}");
    }
    for ratio in [
        "tls          gateway / bare",
        "signed       gateway / signed-floor",
        "key-package  gateway / signed-floor",
        "handshakes   gateway / bare",
        "resumed      gateway / bare",
    ] {
        assert!(stdout.contains(ratio), "{ratio} in {stdout}");
    }
    assert!(stdout.contains("Redis holds"), "{stdout}");
    // Without resumption no handshake resumes; with it, some do (a client keeps a few
    // tickets per server, so not every one of the concurrent connections has one).
    let resumed = |scenario: &str, target: &str| -> u64 {
        let words: Vec<&str> = runs
            .iter()
            .map(|line| line.split_whitespace().collect::<Vec<&str>>())
            .find(|words| words[2] == scenario && words[3] == target)
            .unwrap();
        let at = words.iter().rposition(|word| *word == "resumed").unwrap();
        words[at - 3].parse().unwrap()
    };
    assert_eq!(resumed("handshakes", "gateway"), 0);
    assert!(resumed("resumed", "gateway") > 0);
    assert!(stdout.contains("machine: "), "{stdout}");
    // The CSV: a header and one row per run.
    let text = csv_text(out.path());
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("round,scenario,target,answered"),
        "{text}"
    );
    assert_eq!(lines.len(), 10, "{text}");
    assert!(
        lines[1..]
            .iter()
            .all(|line| line.split(',').nth(9) == Some("0")),
        "no errors: {text}"
    );
    // The sweep: each scenario at half and all of its floor's peak, against the gateway and
    // the floor, paced: a run of 0.5 s at a rate answers at most that rate's half second
    // (and the one due at its start), whatever the machine.
    let sweep = std::fs::read_to_string(
        written(out.path(), "-sweep.csv")
            .pop()
            .expect("the sweep's CSV"),
    )
    .unwrap();
    let rows: Vec<Vec<&str>> = sweep
        .lines()
        .skip(1)
        .map(|line| line.split(',').collect())
        .collect();
    assert!(
        sweep.starts_with("scenario,target,offered_per_s,answered_per_s,answered,"),
        "{sweep}"
    );
    assert_eq!(rows.len(), 5 * 2 * 2, "{sweep}");
    for (scenario, floor) in [
        ("tls", "bare"),
        ("signed", "signed-floor"),
        ("key-package", "signed-floor"),
        ("handshakes", "bare"),
        ("resumed", "bare"),
    ] {
        for target in [floor, "gateway"] {
            let runs: Vec<&Vec<&str>> = rows
                .iter()
                .filter(|row| row[0] == scenario && row[1] == target)
                .collect();
            assert_eq!(runs.len(), 2, "{scenario} {target}: {sweep}");
            let offered: Vec<f64> = runs.iter().map(|row| row[2].parse().unwrap()).collect();
            assert!(
                (offered[1] / offered[0] - 2.0).abs() < 0.01,
                "{scenario} {target}: half, then all of the floor's peak: {offered:?}"
            );
            runs.iter().for_each(|row| assert_paced(row, 0.5));
        }
        // Its chart: latency against offered load, every series drawn in its colour.
        let charts = written(out.path(), &format!("-{scenario}.png"));
        assert_eq!(charts.len(), 1, "{scenario}: {charts:?}");
        let pixels = mimi_gateway::bench::chart::Pixels::read(&charts[0]).unwrap();
        assert_eq!(pixels.size, (900, 560));
        for colour in [[0, 90, 200], [110, 170, 240], [210, 95, 0], [245, 175, 110]] {
            let drawn = pixels.counts.get(&colour).copied().unwrap_or(0);
            assert!(drawn > 50, "{scenario}: {colour:?} drawn on {drawn} pixels");
        }
        assert!(
            stdout.contains(&format!("chart of {scenario}: ")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("chart labels in "), "{stdout}");
    // What it started (it names their PIDs), it stopped.
    let started = named_pids(&stdout, "processes: ");
    assert_eq!(started.len(), 3, "{stdout}");
    started.into_iter().for_each(assert_gone);
}

/// A sweep fraction that is not one, a sweep run's time that is not a time and a rate too
/// small to pace by are refused before anything starts.
#[test]
fn the_load_generator_refuses_a_bad_sweep() {
    let mut bad: Vec<(Vec<&str>, &str)> = ["0.5,fast", "0", "0.5,-1", "11", "nan", ""]
        .into_iter()
        .map(|fractions| (vec!["--sweep", fractions], "--sweep: `"))
        .collect();
    bad.push((vec!["--sweep-seconds", "nan"], "--sweep-seconds: NaN"));
    bad.push((vec!["--sweep-seconds", "0.01"], "--sweep-seconds: 0.01"));
    bad.push((vec!["--rate", "1e-20"], "--rate: 0.00000000000000000001"));
    for (args, error) in bad {
        let mut all = vec!["--scenarios", "tls"];
        all.extend(&args);
        let (ok, stdout, stderr) = bench(&all);
        assert!(!ok, "{args:?}: {stdout}");
        assert!(stderr.contains(error), "{args:?}: {stderr}");
        assert!(!stdout.contains("machine: "), "{stdout}");
    }
}

/// `commit-2`: groups created through the client crate, a chain of self-update commits per
/// group made and signed beforehand, every one accepted in order; the summary holds the
/// comparison with openmls' own cost and Redis' bytes per commit.
#[test]
fn the_load_generator_commits_next_to_openmls() {
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = bench(&[
        "--scenarios",
        "commit-2",
        "--rounds",
        "1",
        "--seconds",
        "2",
        "--commits",
        "40",
        "--in-flight",
        "4",
        "--connections",
        "2",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let run = stdout
        .lines()
        .find(|line| line.starts_with("round 1 commit-2     gateway"))
        .unwrap_or_else(|| panic!("a commit-2 run in {stdout}"));
    assert!(run.ends_with("errors {}"), "{run}");
    let per_second: f64 = run.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(per_second > 0.0, "{run}");
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("commit-2     gateway / openmls"))
        .unwrap_or_else(|| panic!("the comparison in {stdout}"));
    assert!(
        summary.contains("x per commit") && summary.contains("B per commit"),
        "{summary}"
    );
}

#[test]
fn the_load_generator_refuses_an_unknown_scenario() {
    let (ok, _, stderr) = bench(&["--scenarios", "tls,everything"]);
    assert!(!ok);
    assert!(stderr.contains("unknown scenario `everything`"), "{stderr}");
}

/// `message-fanout-2` and `-100`: a group over two federating gateways that the benchmark
/// starts (a hub and a follower), messages made and signed beforehand, every one the hub
/// accepted found in the follower's last queue; the summary holds the deliveries and
/// Redis' bytes per message; both gateways are gone when it exits.
#[test]
fn the_load_generator_fans_messages_out_over_two_gateways() {
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = bench(&[
        "--scenarios",
        "message-fanout-2,message-fanout-100",
        "--rounds",
        "1",
        "--seconds",
        "2",
        "--messages",
        "120",
        "--in-flight",
        "4",
        "--connections",
        "2",
        "--sweep",
        "0.5,1",
        "--sweep-seconds",
        "0.5",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    for scenario in ["message-fanout-2", "message-fanout-100"] {
        let run = stdout
            .lines()
            .find(|line| line.starts_with(&format!("round 1 {scenario} gateways")))
            .unwrap_or_else(|| panic!("a {scenario} run in {stdout}"));
        assert!(run.ends_with("errors {}"), "{run}");
        assert!(run.contains("; 0 not there in time"), "{run}");
        let per_second: f64 = run.split_whitespace().nth(4).unwrap().parse().unwrap();
        assert!(per_second > 0.0, "{run}");
        let summary = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{scenario} ")) && line.contains("messages/s"))
            .unwrap_or_else(|| panic!("the {scenario} summary in {stdout}"));
        assert!(
            summary.contains("deliveries/s") && summary.contains("B per message"),
            "{summary}"
        );
    }
    // The sweep: each fan-out at half and all of what reached the last queue a second in the
    // rounds, paced; every message the hub accepted in the last queue; a chart of the
    // gateways' latency (no floor: only their two series).
    let sweep = std::fs::read_to_string(
        written(out.path(), "-sweep.csv")
            .pop()
            .expect("the sweep's CSV"),
    )
    .unwrap();
    for scenario in ["message-fanout-2", "message-fanout-100"] {
        let runs: Vec<Vec<&str>> = sweep
            .lines()
            .map(|line| line.split(',').collect::<Vec<&str>>())
            .filter(|row| row[0] == scenario)
            .collect();
        assert_eq!(runs.len(), 2, "{scenario}: {sweep}");
        for row in &runs {
            assert_eq!(row[1], "gateways", "{row:?}");
            assert_paced(row, 0.5);
        }
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|line| line.starts_with(&format!("sweep {scenario}")))
            .collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        for line in lines {
            assert!(line.ends_with("0 not in the last queue in time"), "{line}");
        }
        let charts = written(out.path(), &format!("-{scenario}.png"));
        assert_eq!(charts.len(), 1, "{scenario}: {charts:?}");
        let pixels = mimi_gateway::bench::chart::Pixels::read(&charts[0]).unwrap();
        for colour in [[0, 90, 200], [110, 170, 240]] {
            let drawn = pixels.counts.get(&colour).copied().unwrap_or(0);
            assert!(drawn > 50, "{scenario}: {colour:?} drawn on {drawn} pixels");
        }
        // No floor: its colours nowhere, neither a series nor a legend entry.
        for colour in [[210, 95, 0], [245, 175, 110]] {
            let drawn = pixels.counts.get(&colour).copied().unwrap_or(0);
            assert_eq!(drawn, 0, "{scenario}: {colour:?} drawn on {drawn} pixels");
        }
    }
    let started = named_pids(&stdout, "fan-out gateways: ");
    assert_eq!(started.len(), 2, "{stdout}");
    started.into_iter().for_each(assert_gone);
}

/// `--rate`: the fan-out run offers messages at that rate, so a one-second run sends at
/// most that many (and one more at its start), however fast the machine.
#[test]
fn the_load_generator_paces_messages_at_the_offered_rate() {
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = bench(&[
        "--scenarios",
        "message-fanout-2",
        "--rounds",
        "1",
        "--seconds",
        "1",
        "--messages",
        "500",
        "--rate",
        "20",
        "--sweep",
        "none",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(written(out.path(), "-sweep.csv").is_empty(), "--sweep none");
    let text = csv_text(out.path());
    let row = text.lines().nth(1).expect("the run's row");
    let delivered: usize = row.split(',').nth(3).unwrap().parse().unwrap();
    assert!((1..=21).contains(&delivered), "{row}");
    assert_eq!(row.split(',').nth(9), Some("0"), "no errors: {row}");
}
