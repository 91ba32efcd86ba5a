//! The command line as an operator uses it: `serve` with no configuration, `keygen`
//! (create, refuse to overwrite, rotate), `certs`, `discover`, and configuration errors.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use mimi_gateway::keys::KeyRing;
use mimi_wire::decode_exact;
use mimi_wire::verification_key::VerificationKeyResponse;

use crate::support::*;

/// `cargo run --release -- serve` with no configuration: the README's first command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_config_prints_listeners_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = GatewayProcess::serve(dir.path(), &[], &[]);
    assert!(
        gateway.banner.contains("serving domain localhost"),
        "{}",
        gateway.banner
    );
    assert!(gateway.banner.contains("memory"), "{}", gateway.banner);
    assert_eq!(gateway.address("application").to_string(), "127.0.0.1:7443");
    assert_eq!(gateway.address("federation").to_string(), "0.0.0.0:8443");
    assert_eq!(gateway.address("admin").to_string(), "127.0.0.1:9090");
    let ca = dir.path().join("mimi-data/dev-certs/ca.pem");
    assert!(ca.exists(), "development CA generated in ./mimi-data");
    let answer = TlsClient::new(&ca, Protocol::Http1)
        .send(
            "127.0.0.1:8443".parse().unwrap(),
            Method::GET,
            "/.well-known/mimi/ds-domain",
            HeaderMap::new(),
            vec![],
        )
        .await;
    assert_eq!(&answer.body[..], b"localhost");
    gateway.terminate();
    assert!(
        gateway
            .wait_exit(Duration::from_secs(20))
            .expect("exits")
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_creates_a_private_key_file_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    let path_arg = path.to_str().unwrap();
    let created = run_cli(&["keygen", "--key-file", path_arg]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let first = KeyRing::load(&path).unwrap().keys()[0].id.clone();

    let refused = run_cli(&["keygen", "--key-file", path_arg]);
    assert!(
        !refused.status.success(),
        "an existing key file is never overwritten"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--rotate"));
    assert_eq!(KeyRing::load(&path).unwrap().keys().len(), 1);

    let rotated = run_cli(&["keygen", "--key-file", path_arg, "--rotate"]);
    assert!(rotated.status.success());
    let ring = KeyRing::load(&path).unwrap();
    assert_eq!(ring.keys().len(), 2);
    let current = ring.current(now()).unwrap().id.clone();
    assert_ne!(current, first);

    // A gateway on that key file publishes the new key first and the old one beside it.
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.auth.key_file = Some(path.clone())
    })
    .await;
    let answer = harness
        .client(Protocol::Http1)
        .send(
            harness.federation,
            Method::GET,
            "/verification_key",
            HeaderMap::new(),
            vec![],
        )
        .await;
    let keys: VerificationKeyResponse = decode_exact(&answer.body).unwrap();
    let ids: Vec<&str> = keys.keys.iter().map(|key| key.key_id.as_str()).collect();
    assert_eq!(ids, [current.as_str(), first.as_str()]);
    let old = keys.key(&first).unwrap();
    assert!(
        old.not_after <= now() + 7 * 86_400 + 5,
        "old key retires within the grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_makes_a_ca_and_certificates_a_gateway_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let made = run_cli(&[
        "certs",
        "--domains",
        "a.localhost,b.localhost",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for file in [
        "ca.pem",
        "ca-key.pem",
        "a.localhost.pem",
        "a.localhost-key.pem",
        "b.localhost.pem",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }
    // Running again reuses the CA.
    let ca_before = std::fs::read(out.join("ca.pem")).unwrap();
    assert!(
        run_cli(&[
            "certs",
            "--domains",
            "c.localhost",
            "--out",
            out.to_str().unwrap()
        ])
        .status
        .success()
    );
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca_before);

    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.domain = "b.localhost".into();
        config.tls.cert = Some(out.join("b.localhost.pem"));
        config.tls.key = Some(out.join("b.localhost-key.pem"));
    })
    .await;
    assert!(harness.gateway.as_ref().unwrap().dev_ca.is_none());
    let client = mimi_well_known::HttpsClient::new(Some(&out.join("ca.pem")))
        .unwrap()
        .with_override("b.localhost", harness.federation);
    let port = harness.federation.port();
    let discovery = mimi_well_known::Resolver::new(client)
        .discover(&format!("b.localhost:{port}"))
        .await
        .unwrap();
    assert_eq!(discovery.ds_domain, "b.localhost");
    // The c.localhost certificate does not name b.localhost: a client refuses it.
    let wrong = Harness::start_with(StoreSpec::Memory, |config| {
        config.tls.cert = Some(out.join("c.localhost.pem"));
        config.tls.key = Some(out.join("c.localhost-key.pem"));
    })
    .await;
    let client = mimi_well_known::HttpsClient::new(Some(&out.join("ca.pem")))
        .unwrap()
        .with_override("b.localhost", wrong.federation);
    let port = wrong.federation.port();
    assert!(
        mimi_well_known::Resolver::new(client)
            .discover(&format!("b.localhost:{port}"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_prints_the_ds_domain_and_keys() {
    let harness = Harness::start_with(StoreSpec::Memory, |config| {
        config.domain = "a.localhost".into()
    })
    .await;
    let port = harness.federation.port();
    let output = tokio::task::spawn_blocking({
        let ca = harness.ca.clone();
        move || {
            run_cli(&[
                "discover",
                &format!("a.localhost:{port}"),
                "--ca",
                ca.to_str().unwrap(),
                "--resolve",
                &format!("a.localhost=127.0.0.1:{port}"),
            ])
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ds domain   a.localhost"), "{stdout}");
    let ring = KeyRing::load(&harness.dir.path().join("signing-keys.toml")).unwrap();
    assert!(stdout.contains(&ring.keys()[0].id), "{stdout}");

    // Without the development CA the certificate is not trusted.
    let untrusted = tokio::task::spawn_blocking(move || {
        run_cli(&[
            "discover",
            &format!("a.localhost:{port}"),
            "--resolve",
            &format!("a.localhost=127.0.0.1:{port}"),
        ])
    })
    .await
    .unwrap();
    assert!(!untrusted.status.success());
}

#[test]
fn invalid_configuration_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4();
    let roots = dir.path().join("roots.pem");
    mimi_gateway::dev_certs::DevCa::open_or_create(dir.path()).unwrap();
    std::fs::copy(dir.path().join("ca.pem"), &roots).unwrap();
    // An X.509 application with the given identity lines (trust roots given unless the lines
    // name their own).
    let x509 = |lines: &str| {
        let roots_line = if lines.contains("trust_roots") {
            String::new()
        } else {
            format!("trust_roots = [{roots:?}]\n")
        };
        format!(
            "[[applications]]\nid = \"{id}\"\n[applications.identity]\nprovider = \"x509\"\n{roots_line}{lines}\n"
        )
    };
    let cases = [
        (
            format!("[[applications]]\nid = \"{id}\"\n[[applications]]\nid = \"{id}\"\n"),
            "applications[1].id",
        ),
        (
            "[[applications]]\nid = \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"\n".to_string(),
            "applications[0].id",
        ),
        ("domain = \"not a domain\"\n".to_string(), "domain"),
        (
            "[limits]\nmax_body_bytes = 0\n".to_string(),
            "limits.max_body_bytes",
        ),
        ("[tls]\ncert = \"x.pem\"\n".to_string(), "tls"),
        ("typo_key = 1\n".to_string(), "typo_key"),
        (x509(""), "applications[0].identity.device_handle_range"),
        (
            x509("device_handle_range = { start = 1, end = 0 }"),
            "applications[0].identity.device_handle_range",
        ),
        (
            x509("device_handle_range = { start = 0, end = 0 }\nsupports_accounts = true"),
            "applications[0].identity.account_handle_offset",
        ),
        (
            x509(
                "device_handle_range = { start = 0, end = 1 }\nsupports_accounts = true\naccount_handle_offset = 1",
            ),
            "applications[0].identity.account_handle_offset",
        ),
        (
            x509(
                "device_handle_range = { start = 0, end = 0 }\nsupports_accounts = true\naccount_handle_offset = 2\n\
                 supports_domains = true\ndomain_name_offset = 2",
            ),
            "applications[0].identity.domain_name_offset",
        ),
        (
            format!(
                "[[applications]]\nid = \"{id}\"\n[applications.identity]\nprovider = \"x509\"\n\
                 device_handle_range = {{ start = 0, end = 0 }}\n"
            ),
            "applications[0].identity.trust_roots",
        ),
        (
            x509(
                "device_handle_range = { start = 0, end = 0 }\ntrust_roots = [\"/nonexistent/root.pem\"]",
            ),
            "applications[0].identity.trust_roots[0]",
        ),
        (
            format!(
                "[[applications]]\nid = \"{id}\"\n[applications.identity]\nsupports_accounts = true\n"
            ),
            "applications[0].identity",
        ),
    ];
    for (text, field) in cases {
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        let output = run_cli(&["serve", "--config", path.to_str().unwrap()]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(field), "names `{field}`: {stderr}");
    }
}

/// Every key can be set from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "domain = \"file.localhost\"\n").unwrap();
    let mut env = loopback_env(dir.path());
    env.push(("MIMI_DOMAIN", "env.localhost".into()));
    let gateway = GatewayProcess::serve(dir.path(), &["--config", config.to_str().unwrap()], &env);
    assert!(
        gateway.banner.contains("serving domain env.localhost"),
        "{}",
        gateway.banner
    );
    let (status, _) = admin_get(gateway.address("admin"), "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

/// Other software's `MIMI_*` variables in the environment do not stop the gateway: each is
/// named in a warning. A misspelt key under a known section is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_mimi_variables_are_ignored_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = loopback_env(dir.path());
    env.push(("MIMI_RELEASE_CHANNEL", "beta".into()));
    env.push(("MIMI_HOME", "/opt/mimi".into()));
    env.push(("RUST_LOG", "warn".into()));
    let gateway = GatewayProcess::serve(dir.path(), &[], &env);
    let (status, _) = admin_get(gateway.address("admin"), "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    for name in ["MIMI_RELEASE_CHANNEL", "MIMI_HOME"] {
        assert!(
            log.contains(name) && log.contains("ignoring an environment variable"),
            "{name} named in a warning: {log}"
        );
    }
    drop(gateway);

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
        .args(["serve"])
        .current_dir(dir.path())
        .envs(loopback_env(dir.path()))
        .env("MIMI_STORE__REDIS_ULR", "redis://127.0.0.1:1/")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("redis_ulr"),
        "names the misspelt key: {stderr}"
    );
}

/// Registers `handle` at a gateway process; answers the request's id (`x-request-id`).
async fn register_logged(
    gateway: &GatewayProcess,
    dir: &std::path::Path,
    app: &TestApp,
    handle: &str,
) -> String {
    let path = format!("/apps/{}/clients", app.id);
    let body = mimi_wire::encode(&mimi_wire::registry::RegisterClientRequest {
        version: 1,
        client_handle: handle.into(),
        tags: vec![],
    })
    .unwrap();
    let headers = signed_headers(&app.key, app.claims(), &Method::POST, &path, &body);
    let answer = TlsClient::new(&dir.join("dev-certs/ca.pem"), Protocol::Http1)
        .send(
            gateway.address("application"),
            Method::POST,
            &path,
            headers,
            body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    answer
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// Every log line of a request carries its id (the `x-request-id` answer header), including
/// lines the handler writes; and a log file gets no terminal colour codes. At the default
/// level a request writes no line of its own (issue 17: the per-request line cost more than
/// the request); with `logging.access_log` each answer has one, on `mimi_gateway::access`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_of_a_request_carry_its_id() {
    for access_log in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let app = TestApp::new();
        let key = hex::encode(app.key.verifying_key().as_bytes());
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!("[[applications]]\nid = \"{}\"\n[[applications.keys]]\nid = \"{}\"\npublic_key = \"{key}\"\n", app.id, app.key_id),
        )
        .unwrap();
        let mut env = loopback_env(dir.path());
        env.push(("RUST_LOG", "info".into()));
        if access_log {
            env.push(("MIMI_LOGGING__ACCESS_LOG", "true".into()));
        }
        let gateway =
            GatewayProcess::serve(dir.path(), &["--config", config.to_str().unwrap()], &env);
        let id = register_logged(&gateway, dir.path(), &app, "logged").await;
        let mut lines = Vec::new();
        let found = eventually(Duration::from_secs(10), || {
            let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
            lines = log
                .lines()
                .filter(|line| line.contains(&format!("id={id}")))
                .map(str::to_owned)
                .collect::<Vec<_>>();
            let complete = lines.iter().any(|line| line.contains("client registered"))
                && (!access_log || lines.iter().any(|line| line.contains("answered")));
            async move { complete }
        })
        .await;
        assert!(
            found,
            "request id {id} on the handler's and the pipeline's lines: {lines:?}"
        );
        let answered: Vec<&String> = lines
            .iter()
            .filter(|line| line.contains("answered"))
            .collect();
        if access_log {
            assert_eq!(answered.len(), 1, "{lines:?}");
            for part in [
                "mimi_gateway::access",
                "status=201",
                "endpoint=\"register_client\"",
                "method=POST",
            ] {
                assert!(answered[0].contains(part), "{part} in {}", answered[0]);
            }
        } else {
            assert!(
                answered.is_empty(),
                "no line per request by default: {lines:?}"
            );
        }
        let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap();
        assert!(!log.contains('\u{1b}'), "no ANSI escapes in a log file");
    }
}

/// Runs `mimi-gateway call --app-file FILE ARGS...`; answers (success, stdout, stderr).
fn call(app_file: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
        .arg("call")
        .arg("--app-file")
        .arg(app_file)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Issue 16, "A first `serve` that can be used at once": with no configuration the gateway
/// hosts a development application, prints its id and key with a command to try, and that
/// command works as printed; the application is kept across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_serve_creates_a_development_application_that_call_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let env = loopback_env(dir.path());
    let mut gateway = GatewayProcess::serve(dir.path(), &[], &env);
    let banner = gateway.banner.clone();
    assert!(
        banner.contains("development application created"),
        "{banner}"
    );
    let app_file = dir.path().join("dev-application.toml");
    let dev = mimi_gateway::dev_app::DevApplication::load(&app_file).unwrap();
    assert!(banner.contains(&dev.app.to_string()), "{banner}");
    assert!(
        banner.contains(&hex::encode(dev.key.to_bytes())),
        "{banner}"
    );
    let port = gateway.address("application").port();
    assert_eq!(dev.url, Some(format!("https://localhost:{port}")));
    let try_line = banner
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("try"))
        .expect("a command to try");
    assert_eq!(
        try_line.trim(),
        format!("mimi-gateway call --app-file {} whoami", app_file.display())
    );

    let (ok, out, err) = call(&app_file, &["whoami"]);
    assert!(ok, "{err}");
    assert!(out.contains(&dev.app.to_string()), "{out}");
    let (ok, out, err) = call(&app_file, &["register-client", "carol", "--tag", "team"]);
    assert!(ok, "{err}");
    let carol: uuid::Uuid = out.trim().parse().expect("a client id");
    let (ok, out, _) = call(&app_file, &["discover", "team"]);
    assert!(
        ok && out.contains(&carol.to_string()) && out.contains("carol"),
        "{out}"
    );
    let (ok, out, _) = call(&app_file, &["read-client", &carol.to_string()]);
    assert!(ok && out.contains("carol") && out.contains("team"), "{out}");
    // A refusal: exit status 1, the code named.
    let (ok, _, err) = call(&app_file, &["register-client", "carol"]);
    assert!(!ok);
    assert!(err.contains("HandleTaken"), "{err}");

    gateway.terminate();
    assert!(
        gateway
            .wait_exit(Duration::from_secs(20))
            .expect("exits")
            .success()
    );
    // Started again, the same application.
    let mut gateway = GatewayProcess::serve(dir.path(), &[], &env);
    assert!(
        gateway.banner.contains("development application reused"),
        "{}",
        gateway.banner
    );
    assert!(gateway.banner.contains(&dev.app.to_string()));
    // The secret key is printed once, at creation; a restart shows its public half.
    assert!(!gateway.banner.contains(&hex::encode(dev.key.to_bytes())));
    assert!(
        gateway
            .banner
            .contains(&hex::encode(dev.key.verifying_key().as_bytes()))
    );
    gateway.terminate();
    assert!(
        gateway
            .wait_exit(Duration::from_secs(20))
            .expect("exits")
            .success()
    );
}

/// A configured gateway never creates a development application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_gateway_makes_no_development_application() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "domain = \"localhost\"\n").unwrap();
    let env = loopback_env(dir.path());
    let mut gateway =
        GatewayProcess::serve(dir.path(), &["--config", config.to_str().unwrap()], &env);
    assert!(
        !gateway.banner.contains("development application"),
        "{}",
        gateway.banner
    );
    assert!(!dir.path().join("dev-application.toml").exists());
    gateway.terminate();
    assert!(
        gateway
            .wait_exit(Duration::from_secs(20))
            .expect("exits")
            .success()
    );
}

/// Every subcommand's `--help` runs and says what it does (its one-line summary, as the top
/// level lists it).
#[test]
fn every_subcommand_has_a_help() {
    let help = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let top = help(&[]);
    for (command, summary) in [
        ("serve", "Run the gateway"),
        ("keygen", "Create the request-signing key file"),
        ("certs", "Generate a development CA"),
        (
            "check-config",
            "Check a configuration file without starting",
        ),
        ("call", "Call the gateway's application API"),
        ("demo", "Play the architecture draft's federated flow"),
        ("bench", "Measure the gateway against bare references"),
        ("discover", "Resolve a peer"),
    ] {
        assert!(
            top.contains(summary),
            "top-level help lists {command}: {top}"
        );
        assert!(help(&[command]).starts_with(summary), "{command} --help");
    }
    let calls = help(&["call"]);
    for (call, summary) in [
        ("whoami", "How the gateway authenticates"),
        ("register-client", "Register a client"),
        ("read-client", "A client's handle and tags"),
        ("discover", "Clients with a tag"),
        ("create-key-queue", "Create a key queue"),
        ("upload-key-packages", "Upload key packages"),
        ("key-package", "Retrieve a key package"),
        ("welcomes", "The Welcomes waiting"),
        ("fetch-messages", "Messages queued for a client"),
        ("group-status", "A group's epoch"),
    ] {
        assert!(calls.contains(call), "call --help lists {call}");
        assert!(
            help(&["call", call]).starts_with(summary),
            "call {call} --help"
        );
    }
}

/// `check-config FILE`: a valid file is described (listeners, TLS, keys, store, applications
/// and their identity providers, peers) without starting anything; an invalid one exits 1
/// naming the field, including errors only building the identity providers finds.
#[test]
fn check_config_describes_a_valid_file_and_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, text).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
            .args(["check-config", file.to_str().unwrap()])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let app = "6f1b4ac3-0c52-4a50-9a7e-2f1f3c9f8a10";
    let key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let (ok, out, err) = check(&format!(
        "domain = \"a.example\"\n\
         [listeners]\napplication = \"127.0.0.1:17443\"\n\
         [store]\nredis_url = \"redis://user:hunter2@127.0.0.1:1/\"\n\
         [federation]\nallowed_peers = [\"b.example\"]\n\
         [[applications]]\nid = \"{app}\"\npublic = false\n\
         [applications.identity]\nprovider = \"basic_with_domains\"\n\
         [[applications.keys]]\nid = \"k1\"\npublic_key = \"{key}\"\n"
    ));
    assert!(ok, "{err}");
    for expected in [
        "configuration valid",
        "domain       a.example",
        "application  https://127.0.0.1:17443",
        "store        redis redis://***@127.0.0.1:1/",
        "peers        only b.example",
        &format!("application  {app} (private; 1 key; BasicWithDomains, domains (federates))"),
    ] {
        assert!(out.contains(expected), "{expected:?} in\n{out}");
    }
    assert!(!out.contains("hunter2"), "no password printed: {out}");
    // Nothing was started or written: no key file, no certificates.
    assert!(!dir.path().join("mimi-data").exists());

    let (ok, _, err) = check("domain = \"a.example\"\n[limits]\nmax_body_bytes = 0\n");
    assert!(!ok);
    assert!(err.contains("`limits.max_body_bytes`"), "{err}");
    let (ok, _, err) = check(&format!(
        "domain = \"a.example\"\n[[applications]]\nid = \"{app}\"\n\
         [applications.identity]\nprovider = \"x509\"\ntrust_roots = [\"missing.pem\"]\n\
         [applications.identity.device_handle_range]\nstart = 0\nend = 1\n"
    ));
    assert!(!ok);
    assert!(
        err.contains("`applications[0].identity.trust_roots[0]`"),
        "{err}"
    );
}

/// `inspect`: a key package file, a signature header on stdin, an error body in hex; bytes
/// that are none of these exit 1.
#[test]
fn inspect_names_and_prints_what_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        use std::io::Write as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
            .arg("inspect")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let key_package = crate::support::mls_client::MlsClient::basic("carol").key_package(3_600);
    let file = dir.path().join("kp.bin");
    std::fs::write(&file, &key_package).unwrap();
    let (ok, out, err) = run(&[file.to_str().unwrap()], b"");
    assert!(ok, "{err}");
    assert!(out.starts_with("mls\nMLSMessage KeyPackage"), "{out}");

    let app = TestApp::new();
    let headers = signed_headers(&app.key, app.claims(), &http::Method::POST, "/whoami", b"");
    let header = headers[mimi_wire::signing::SIGNATURE_HEADER]
        .as_bytes()
        .to_vec();
    let (ok, out, err) = run(&[], &header);
    assert!(ok, "{err}");
    assert!(out.starts_with("signature\n"), "{out}");
    assert!(
        out.contains(&app.id.to_string()) && out.contains(&app.key_id),
        "{out}"
    );

    let body = mimi_wire::encode(&mimi_wire::ErrorResponse {
        code: mimi_wire::ErrorCode::UnknownClient.code(),
        detail: "unknown client".into(),
        fields: Vec::new(),
    })
    .unwrap();
    let (ok, out, _) = run(&["--as", "error"], hex::encode(&body).as_bytes());
    assert!(ok && out.contains("UnknownClient"), "{out}");
    let (ok, _, err) = run(&[], b"\x01\x02\x03 certainly nothing");
    assert!(!ok);
    assert!(err.contains("decode as none of"), "{err}");
}

/// `mimi-gateway demo`: the whole federated flow on two in-process gateways, embedded stores
/// and then Redis, exits 0 having printed every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plays_the_federated_flow_on_memory_and_on_redis() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mimi-gateway"))
            .arg("demo")
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[]);
    assert!(ok, "{out}\n{err}");
    for step in [
        "carol  POST /apps/{app}/clients",
        "alice  discover tag friends @ b.localhost",
        "alice  key package of carol @ b.localhost",
        "carol  GET .../welcome-msgs, join",
        "\"hello carol\"",
        "\"hi alice\"",
        "409 StaleEpoch",
        "alice commits by ref",
        "external join, via b",
        "3 members",
        "all 16 steps checked out",
    ] {
        assert!(out.contains(step), "{step:?} in\n{out}");
    }
    assert!(out.contains("store memory"), "{out}");
    // Every step says what its requests carried: at least one request, bytes back.
    let step_lines: Vec<&str> = out
        .lines()
        .filter(|line| {
            line.trim_start()
                .split('.')
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .collect();
    assert_eq!(step_lines.len(), 16, "{out}");
    for line in step_lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |unit: &str| -> u64 {
            let at = words
                .iter()
                .rposition(|word| *word == unit)
                .unwrap_or_else(|| panic!("{unit} in {line}"));
            words[at - 1]
                .parse()
                .unwrap_or_else(|_| panic!("a number before {unit} in {line}"))
        };
        assert!(after("req") >= 1, "{line}");
        let at_in = words.iter().rposition(|word| *word == "in").unwrap();
        assert_eq!(words[at_in - 1], "B", "{line}");
        assert!(words[at_in - 2].parse::<u64>().unwrap() > 0, "{line}");
    }
    let redis = RedisServer::start();
    let (ok, out, err) = run(&["--redis", &redis.url()]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("store redis") && out.contains("all 16 steps checked out"),
        "{out}"
    );
    // A URL naming a database (the demo takes databases 1 and 2) is refused before any work.
    let with_database = format!("{}/3", redis.url().trim_end_matches('/'));
    let (ok, out, err) = run(&["--redis", &with_database]);
    assert!(!ok, "{out}");
    assert!(err.contains("without a database"), "{err}");
    assert!(!out.contains("gateways:"), "nothing started: {out}");
}
