//! The documentation promises what the code does: the error table in `docs/errors.md` lists
//! every code with its number, status and detail.

use mimi_wire::ErrorCode;

#[test]
fn error_table_matches_the_code() {
    let table =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md")).unwrap();
    for code in ErrorCode::ALL {
        let row = format!(
            "| {} | `{:?}` | {} | {} |",
            code.code(),
            code,
            code.http_status(),
            code.description()
        );
        assert!(table.contains(&row), "docs/errors.md lacks the row {row}");
    }
    let rows = table.lines().filter(|line| {
        line.starts_with("| ") && !line.starts_with("| code") && !line.starts_with("| ---")
    });
    assert_eq!(
        rows.count(),
        ErrorCode::ALL.len(),
        "no undocumented or stale rows"
    );
}

/// The configuration keys of `Config` (its defaults serialized), as `section.key`.
fn configuration_keys() -> Vec<(String, String)> {
    let defaults = toml::Value::try_from(mimi_gateway::config::Config::default()).unwrap();
    let mut keys = Vec::new();
    fn walk(prefix: &str, value: &toml::Value, keys: &mut Vec<(String, String)>) {
        match value {
            toml::Value::Table(table) => {
                for (name, inner) in table {
                    let key = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    match inner {
                        toml::Value::Table(_) if !inner.as_table().unwrap().is_empty() => {
                            walk(&key, inner, keys)
                        }
                        _ => keys.push((key, inner.to_string())),
                    }
                }
            }
            other => keys.push((prefix.to_owned(), other.to_string())),
        }
    }
    walk("", &defaults, &mut keys);
    keys
}

/// `docs/configuration.md` documents every configuration key, with its default and its
/// environment variable.
#[test]
fn every_configuration_key_is_documented() {
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let mut missing = Vec::new();
    for (key, default) in configuration_keys() {
        let env = format!("MIMI_{}", key.replace('.', "__").to_ascii_uppercase());
        if !reference.contains(&format!("`{key}`")) || !reference.contains(&env) {
            missing.push(format!("{key} (default {default}, {env})"));
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented keys:\n{}",
        missing.join("\n")
    );
}

/// `docs/endpoints.md` lists every endpoint `src/api/endpoints.rs` declares (by its metric
/// name), and every error code it names exists.
#[test]
fn the_endpoint_reference_lists_every_endpoint_and_real_codes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("docs/endpoints.md")).unwrap();
    let source = std::fs::read_to_string(root.join("src/api/endpoints.rs")).unwrap();
    let names: Vec<&str> = source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Endpoint::"))
        .filter_map(|rest| rest.split("=> \"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(names.len() > 35, "{names:?}");
    for name in names {
        assert!(
            reference.contains(&format!("| `{name}` |")),
            "docs/endpoints.md lacks {name}"
        );
    }
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|code| format!("{code:?}"))
        .collect();
    for row in reference.lines().filter(|line| line.starts_with("| `")) {
        let refusals = row.rsplit('|').nth(1).unwrap_or_default();
        for word in refusals.split('`').skip(1).step_by(2) {
            if word.chars().next().is_some_and(char::is_uppercase) && !word.contains(' ') {
                assert!(
                    codes.iter().any(|code| code == word),
                    "{word} is no ErrorCode ({row})"
                );
            }
        }
    }
}
