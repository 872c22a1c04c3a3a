//! Fleet tools over a ledger: client, verification, rows, proof bundles (see the crate docs).

pub mod bundle;
pub mod client;
pub mod range;
pub mod rows;
pub mod verify;
