//! Per-ledger sync cursors: how far each ledger has caught up with this gateway's log.
//!
//! The sync agent for a ledger writes its cursor after every acknowledged step; retention and
//! `iovctl status` read it. The value is the canonical CBOR array `[version, witnessed, acked]`
//! (unsigned integers, shortest form; version 1):
//!
//! - `witnessed`: size of the latest checkpoint the ledger cosigned (its receipt is stored
//!   under the same ledger name in the receipts column family);
//! - `acked`: blocks `0..acked` the ledger holds in full (headers and the lanes it receives).
//!   Only these may be pruned locally.
//!
//! `acked <= witnessed` is not required: a ledger may mirror headers ahead of what it cosigned
//! only in a misbehaving client, and the reader does not need the relation to stay safe.

use super::{Place, Store, StoreError};

const CURSOR_VERSION: u64 = 1;

/// One ledger's progress.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LedgerCursor {
    pub witnessed: u64,
    pub acked: u64,
}

impl LedgerCursor {
    pub fn to_bytes(&self) -> Vec<u8> {
        let value = ciborium::Value::Array(vec![
            CURSOR_VERSION.into(),
            self.witnessed.into(),
            self.acked.into(),
        ]);
        let mut out = Vec::with_capacity(20);
        // Writing integers into a Vec cannot fail.
        let _ = ciborium::into_writer(&value, &mut out);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<LedgerCursor, String> {
        let value: ciborium::Value =
            ciborium::from_reader(bytes).map_err(|e| format!("not CBOR: {e}"))?;
        let int = |v: &ciborium::Value| -> Option<u64> { v.as_integer()?.try_into().ok() };
        match value.as_array().map(Vec::as_slice) {
            Some([v, w, a]) if int(v) == Some(CURSOR_VERSION) => match (int(w), int(a)) {
                (Some(witnessed), Some(acked)) => {
                    let c = LedgerCursor { witnessed, acked };
                    if c.to_bytes() == bytes {
                        Ok(c)
                    } else {
                        Err("not in canonical form".into())
                    }
                }
                _ => Err("witnessed and acked must be unsigned integers".into()),
            },
            _ => Err(format!("expected [{CURSOR_VERSION}, witnessed, acked]")),
        }
    }
}

/// The stored cursor of `ledger`; the default (nothing synced) when there is none.
pub fn read_cursor<S: Store + ?Sized>(store: &S, ledger: &str) -> Result<LedgerCursor, StoreError> {
    match store.cursor(ledger)? {
        None => Ok(LedgerCursor::default()),
        Some(bytes) => LedgerCursor::from_bytes(&bytes).map_err(|problem| {
            StoreError::Damaged(super::Damage {
                place: Place { cf: "cursors", key: ledger.to_owned() },
                problem,
            })
        }),
    }
}

/// Writes `ledger`'s cursor (one synced write).
pub fn write_cursor<S: Store + ?Sized>(
    store: &mut S,
    ledger: &str,
    cursor: LedgerCursor,
) -> Result<(), StoreError> {
    store.set_cursor(ledger, &cursor.to_bytes())
}

/// Blocks `0..n` every one of `ledgers` holds in full: the prefix retention may prune.
/// `None` when `ledgers` is empty (nothing is acknowledged by an empty set of ledgers).
pub fn acked_by_all<S: Store + ?Sized>(
    store: &S,
    ledgers: &[&str],
) -> Result<Option<u64>, StoreError> {
    let mut least: Option<u64> = None;
    for l in ledgers {
        let acked = read_cursor(store, l)?.acked;
        least = Some(least.map_or(acked, |m| m.min(acked)));
    }
    Ok(least)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::Memory;

    #[test]
    fn cursor_bytes_are_the_documented_cbor_and_round_trip() {
        let c = LedgerCursor { witnessed: 300, acked: 24 };
        // [1, 300, 24]: array(3), 1, uint16 0x012c, 24 (one-byte form 0x18 0x18).
        assert_eq!(c.to_bytes(), [0x83, 0x01, 0x19, 0x01, 0x2c, 0x18, 0x18]);
        assert_eq!(LedgerCursor::from_bytes(&c.to_bytes()), Ok(c));
    }

    #[test]
    fn bad_cursors_are_refused_with_the_reason() {
        let long_form = [0x83, 0x01, 0x1a, 0, 0, 0, 5, 0x01];
        assert!(LedgerCursor::from_bytes(&long_form).unwrap_err().contains("canonical"));
        assert!(LedgerCursor::from_bytes(&[0x83, 0x02, 0x01, 0x01]).unwrap_err().contains("[1,"));
        assert!(LedgerCursor::from_bytes(b"acked 2").is_err());
    }

    #[test]
    fn acked_by_all_is_the_least_and_none_without_ledgers() {
        let mut m = Memory::new("iov.example/gw");
        write_cursor(&mut m, "factory", LedgerCursor { witnessed: 9, acked: 7 }).unwrap();
        write_cursor(&mut m, "city", LedgerCursor { witnessed: 9, acked: 3 }).unwrap();
        assert_eq!(acked_by_all(&m, &["factory", "city"]).unwrap(), Some(3));
        assert_eq!(acked_by_all(&m, &["factory", "never-synced"]).unwrap(), Some(0));
        assert_eq!(acked_by_all(&m, &[]).unwrap(), None);
        m.set_cursor("city", b"junk").unwrap();
        let err = read_cursor(&m, "city").unwrap_err().to_string();
        assert!(err.contains("cursors[city]"), "{err}");
    }
}
