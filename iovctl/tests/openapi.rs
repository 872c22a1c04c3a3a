//! `docs/api/ledger-openapi.json` parses as OpenAPI 3.1 and lists exactly the routes and
//! methods the ledger's server registers (read from `ledger-node/src/server.rs` and
//! `fleet.rs`), so the document cannot drift from the code. `iovctl` is a client of that API:
//! every path it calls must be documented too.

use std::collections::BTreeSet;

use anyhow::{ensure, Context as _, Result};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `(path, method)` pairs of every `.route("PATH", get(..).post(..))` in the server sources.
/// Path constants of `ledger::sync_wire::path` are resolved; `{*rest}` becomes `{rest}`.
fn registered() -> Result<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    for file in ["ledger-node/src/server.rs", "ledger-node/src/fleet.rs"] {
        let src =
            std::fs::read_to_string(format!("{ROOT}/{file}")).with_context(|| file.to_owned())?;
        let mut rest = src.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + 7..];
            // The call's arguments, to its matching parenthesis.
            let mut depth = 1;
            let mut end = 0;
            for (j, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &rest[..end];
            let (path_expr, handlers) = call.split_once(',').context("route without handler")?;
            let path_expr = path_expr.trim();
            let path = if let Some(p) = path_expr.strip_prefix('"') {
                p.trim_end_matches('"').to_owned()
            } else {
                match path_expr {
                    "sync_wire::path::LINK" => ledger::sync_wire::path::LINK.to_owned(),
                    "sync_wire::path::ADD_CHECKPOINT" => {
                        ledger::sync_wire::path::ADD_CHECKPOINT.to_owned()
                    }
                    other => anyhow::bail!("{file}: route path {other} is not known to this test"),
                }
            };
            let path = path.replace("{*", "{");
            let mut any = false;
            for m in ["get", "post", "put", "delete", "patch", "head"] {
                let h = handlers.trim();
                if h.starts_with(&format!("{m}(")) || h.contains(&format!(".{m}(")) {
                    out.insert((path.clone(), m.to_owned()));
                    any = true;
                }
            }
            ensure!(any, "{file}: no method for route {path}");
        }
    }
    Ok(out)
}

#[test]
fn openapi_lists_every_registered_route_and_nothing_else() -> Result<()> {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/api/ledger-openapi.json"))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).context("the OpenAPI file is not JSON")?;
    ensure!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "not OpenAPI 3");
    ensure!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string(), "info");
    let paths = doc["paths"].as_object().context("paths")?;
    let mut documented = BTreeSet::new();
    for (p, item) in paths {
        for (m, op) in item.as_object().context("path item")? {
            if ["get", "post", "put", "delete", "patch", "head"].contains(&m.as_str()) {
                ensure!(op["responses"].is_object(), "{m} {p}: no responses");
                ensure!(op["operationId"].is_string(), "{m} {p}: no operationId");
                // Every path parameter is declared.
                let params: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
                    .unwrap_or_default();
                for seg in p.split('/').filter(|s| s.starts_with('{')) {
                    let name = seg.trim_matches(['{', '}']);
                    ensure!(params.contains(&name), "{m} {p}: path parameter {name} undeclared");
                }
                // References resolve.
                for r in refs(op) {
                    let name = r.strip_prefix("#/components/schemas/").context("ref form")?;
                    ensure!(
                        doc["components"]["schemas"][name].is_object(),
                        "{m} {p}: dangling {r}"
                    );
                }
                documented.insert((p.clone(), m.clone()));
            }
        }
    }
    let mut routes = registered()?;
    routes.insert(("/metrics".into(), "get".into()));
    let missing: Vec<_> = routes.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routes).collect();
    ensure!(
        missing.is_empty(),
        "routes the server registers but the OpenAPI file lacks: {missing:?}"
    );
    ensure!(extra.is_empty(), "OpenAPI paths the server does not register: {extra:?}");
    // Fleet-facing endpoints are versioned.
    for (p, _) in &documented {
        let fleet =
            p.starts_with("/v1/query") || p.starts_with("/v1/units") || p.starts_with("/v1/admin");
        ensure!(!fleet || p.starts_with("/v1/"), "{p} is not versioned");
    }
    Ok(())
}

fn refs(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    out.extend(refs(x));
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| out.extend(refs(x))),
        _ => {}
    }
    out
}

/// `/v1/...` string literals in `iovctl/src/fleet/client.rs` (`{}` placeholders), plus the
/// `sync_wire::path` helpers it calls.
fn client_paths() -> Result<Vec<String>> {
    let src = std::fs::read_to_string(format!("{ROOT}/iovctl/src/fleet/client.rs"))?;
    let mut out = Vec::new();
    for piece in src.split('"').skip(1).step_by(2) {
        if piece.starts_with("/v1/") {
            out.push(piece.to_owned());
        }
    }
    if src.contains("sync_wire::path::LINK") {
        out.push(ledger::sync_wire::path::LINK.to_owned());
    }
    if src.contains("path::query_blocks") || src.contains("path::query_times") {
        out.push(
            ledger::sync_wire::path::query_blocks("o", 0, 1)
                .split('?')
                .next()
                .unwrap_or("")
                .to_owned(),
        );
    }
    Ok(out)
}

/// Whether a concrete or `{}` path matches a documented template segment by segment.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(a, b)| a == b || a.starts_with('{') || *b == "{}" || *b == "o")
}

#[test]
fn every_path_iovctl_calls_is_documented() -> Result<()> {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/api/ledger-openapi.json"))?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let paths: Vec<&String> = doc["paths"].as_object().context("paths")?.keys().collect();
    let used = client_paths()?;
    ensure!(used.len() >= 4, "found only {used:?} in client.rs");
    for u in &used {
        ensure!(
            paths.iter().any(|t| matches(t, u)),
            "iovctl calls {u}, which the OpenAPI file lacks"
        );
    }
    Ok(())
}

#[test]
fn the_routes_of_the_metrics_listener_are_found_too() -> Result<()> {
    // The scanner must see the multi-line `.route(\n "/metrics", get(...))` of the metrics
    // router; if it does not, the check above would pass vacuously for it.
    let r = registered()?;
    ensure!(r.contains(&("/metrics".to_owned(), "get".to_owned())), "{r:?}");
    ensure!(r.contains(&("/v1/units/{unit}/gateways".to_owned(), "get".to_owned())), "{r:?}");
    ensure!(r.len() >= 12, "only {} routes found: {r:?}", r.len());
    Ok(())
}
