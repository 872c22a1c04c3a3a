//! Fleet-facing lookups that are not block queries: which gateways a vehicle (unit id) has.
//!
//! A child module of `server` (declared there with `#[path]`), so it uses the node's state and
//! the server's error helpers without widening their visibility.
//!
//! `GET /v1/units/{unit}/gateways` (token, scope `query` or `query:<unit>`): JSON list of
//! `{"origin", "vkey", "unit", "lanes", "witnessed", "mirrored"}`, one per gateway enrolled
//! with this unit id (a vehicle may have had several: a replaced gateway keeps its history
//! under its own origin). An empty list when no gateway is enrolled for it (200: the token
//! was allowed to ask, and the answer is "none"). Order: by origin.
//!
//! The answer is not signed: it only tells a client which origins to query. What is then
//! fetched is checked against the checkpoints (gateway signature, ledger cosignature), and a
//! client that knows the gateway's vkey pins it (`iovctl history --gateway-key`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{authorize_for, blocking, json_err, stored_checkpoint, Failure, Node};
use crate::store::StoreError;
use crate::token::Scope;

/// One row of `GET /v1/units/{unit}/gateways`.
#[derive(Serialize)]
struct UnitGateway {
    origin: String,
    vkey: String,
    unit: String,
    lanes: Vec<String>,
    /// Size of the latest checkpoint this ledger cosigned (0: none).
    witnessed: u64,
    /// Blocks mirrored.
    mirrored: u64,
}

/// `GET /v1/units/{unit}/gateways`.
pub(super) async fn unit_gateways(
    State(node): State<Arc<Node>>,
    Path(unit): Path<String>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        authorize_for(&node, &headers, &Scope::Query(Some(unit.clone())))?;
        let n = node.clone();
        blocking(move || {
            let mut rows = Vec::new();
            for e in n.store.enrollments()?.into_iter().filter(|e| e.unit == unit) {
                let witnessed = match n.store.witnessed(&e.origin)? {
                    None => 0,
                    Some(note) => stored_checkpoint(&e.origin, &note).map_or(0, |c| c.size()),
                };
                let mirrored = n.store.mirrored(&e.origin)?;
                rows.push(UnitGateway {
                    origin: e.origin,
                    vkey: e.vkey,
                    unit: e.unit,
                    lanes: e.lanes,
                    witnessed,
                    mirrored,
                });
            }
            rows.sort_by(|a, b| a.origin.cmp(&b.origin));
            Ok::<_, StoreError>(rows)
        })
        .await?
        .map_err(|err| node.store_failed(&err))
    }
    .await;
    match r {
        Ok(rows) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&rows).unwrap_or_default(),
        )
            .into_response(),
        Err::<_, Failure>(f) => json_err(&node, f),
    }
}
