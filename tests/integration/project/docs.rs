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
