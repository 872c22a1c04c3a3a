//! The library half of `iovctl`: what other programs (the simulator, tests, an insurer's tool)
//! call to fetch a vehicle's history from a ledger and check it, or to check an offline proof
//! bundle. The `iovctl` binary is a thin command-line shell over it.
//!
//! # Layout
//!
//! - [`fleet::client`]: a blocking HTTP client of the ledger's fleet API (`docs/api/`):
//!   link, gateways of a unit, height and time queries, enrollment. Only transport: nothing it
//!   returns is trusted yet.
//! - [`fleet::verify`]: pure checks of query answers (gateway signature, ledger cosignature,
//!   range completeness, lane digests, the chain between pages, the time boundaries) and lane
//!   opening. Every failure names what did not match.
//! - [`fleet::range`]: fetch and verify a vehicle's blocks over a time range, page by page,
//!   handing each page to the caller only once it is verified.
//! - [`fleet::rows`]: decrypted records to decoded rows (DBC for raw CAN frames; the names of
//!   signal lanes), the row shape the gateway's local API uses.
//! - [`fleet::bundle`]: the offline proof bundle (`iov.example/range-proof@v1`): build, parse
//!   (canonical form only), verify with nothing but the bundle and public keys.

pub mod fleet;
