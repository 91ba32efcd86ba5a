//! Issue 15, "Done means": the gateway's modules import each other in no circle. Read from
//! the sources as they are: a module is a file of `src/` (`x/mod.rs` is `x`); it refers to
//! another through `crate::a::b` (the deepest module of the path) or `super::name` (a sibling
//! module, else the parent). A folder's `mod.rs` and its own files are one room and may refer
//! to each other (the parent declares and dispatches, the children share its helpers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn modules(dir: &Path, prefix: &[String], found: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut inner = prefix.to_vec();
            inner.push(name);
            modules(&path, &inner, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            let mut module = prefix.to_vec();
            if name != "mod" && name != "lib" && name != "main" {
                module.push(name.clone());
            }
            if prefix.is_empty() && (name == "lib" || name == "main") {
                continue;
            }
            found.insert(module.join("::"), std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The identifiers of a path starting right after `at` (`a::b::{c, d}` gives a, b).
fn path_after(source: &str, at: usize) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = &source[at..];
    loop {
        let length = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if length == 0 {
            break;
        }
        segments.push(rest[..length].to_owned());
        rest = &rest[length..];
        match rest.strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    segments
}

/// The names inside `{...}` right after `super::`, or the one name there.
fn super_names(source: &str, at: usize) -> Vec<String> {
    let rest = &source[at..];
    if let Some(inner) = rest.strip_prefix('{') {
        let end = inner.find('}').unwrap_or(inner.len());
        inner[..end]
            .split(',')
            .filter_map(|item| item.trim().split("::").next().map(str::to_owned))
            .filter(|name| !name.is_empty())
            .collect()
    } else {
        path_after(source, at).into_iter().take(1).collect()
    }
}

fn parent(module: &str) -> &str {
    module.rsplit_once("::").map_or("", |(parent, _)| parent)
}

/// The modules `module` refers to, its own folder's excepted.
fn references(module: &str, source: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let segments = path_after(&code, at + "crate::".len());
        for length in (1..=segments.len()).rev() {
            let candidate = segments[..length].join("::");
            if known.contains(&candidate) {
                found.insert(candidate);
                break;
            }
        }
    }
    // `super::` of a folder's file names its folder's `mod.rs`; of a `mod.rs`, the parent.
    let is_folder = known
        .iter()
        .any(|other| parent(other) == module && other != module);
    let base = if is_folder { parent(module) } else { module };
    for (at, _) in code.match_indices("super::") {
        let above = parent(base);
        for name in super_names(&code, at + "super::".len()) {
            let sibling = if above.is_empty() {
                name.clone()
            } else {
                format!("{above}::{name}")
            };
            if known.contains(&sibling) {
                found.insert(sibling);
            } else if !above.is_empty() {
                found.insert(above.to_owned());
            }
        }
    }
    found.retain(|other| {
        other != module && parent(other) != module && parent(module) != other.as_str()
    });
    found
}

/// A circle of `graph`, if it has one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), false);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(false) => {
                    let start = stack.iter().position(|entry| entry == next).unwrap();
                    let mut found = stack[start..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(true) => {}
                None => {
                    if let Some(found) = visit(next, graph, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node)
            && let Some(found) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut sources = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut sources,
    );
    let known: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(module, source)| (module.clone(), references(module, source, &known)))
        .collect()
}

#[test]
fn the_gateways_modules_import_each_other_in_no_circle() {
    let graph = graph();
    assert!(
        graph.len() > 40,
        "the sources were read: {:?}",
        graph.keys()
    );
    assert!(
        graph["net::pipeline"].contains("api"),
        "references are seen: {:?}",
        graph["net::pipeline"]
    );
    if let Some(found) = circle(&graph) {
        panic!("an import circle: {}", found.join(" -> "));
    }
}

/// The checker itself finds a circle where there is one.
#[test]
fn a_circle_is_found() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(circle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(circle(&graph), None);
}

/// The layer a module belongs to: its top folder (`api::app::commits` is in `api`).
fn layer(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// Issue 15, "The shape to reach": data flows one way, `net` -> `api` -> `service` ->
/// `store` and `federation`. The endpoints never reach the store (they call a service) nor
/// the layer that calls them, the error type every layer shares names no layer above; no
/// rule below the endpoints sees the whole gateway context (`state`) or the layers above it;
/// the store, MLS and identity modules know nothing of the rules built on them. The one
/// exception is named: `api::error`, THE mapping of every layer's errors (the store's among
/// them) to wire codes, reads the store's error types and nothing else of it.
#[test]
fn each_layer_refers_only_to_the_layers_below_it() {
    let graph = graph();
    let forbidden: [(&[&str], &[&str]); 4] = [
        (&["api"], &["store", "net"]),
        (
            &["error"],
            &["net", "api", "state", "serve", "service", "federation"],
        ),
        (
            &[
                "service",
                "federation",
                "store",
                "mls",
                "identity",
                "rate_limits",
            ],
            &["net", "api", "state", "serve"],
        ),
        (&["store", "mls", "identity"], &["service", "federation"]),
    ];
    let mut broken = Vec::new();
    for (module, references) in &graph {
        for (from, to) in forbidden {
            if !from.contains(&layer(module)) {
                continue;
            }
            for other in references {
                if module == "api::error" && other == "store" {
                    continue;
                }
                if to.contains(&layer(other)) {
                    broken.push(format!("{module} -> {other}"));
                }
            }
        }
    }
    assert!(
        graph["api::app::key_queues"].contains("service::key_queues"),
        "references are seen: {:?}",
        graph["api::app::key_queues"]
    );
    assert!(
        broken.is_empty(),
        "refers upward or past its layer: {broken:#?}"
    );
}
