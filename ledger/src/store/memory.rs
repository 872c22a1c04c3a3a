//! In-memory [`Store`] for pure tests: same semantics as the RocksDB store, no durability.

use std::collections::BTreeMap;

use super::{check_append, check_prune, Append, Pruned, Store, StoreError};

/// Everything in ordered maps keyed as the RocksDB store keys its column families.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    origin: String,
    size: u64,
    pub headers: BTreeMap<u64, Vec<u8>>,
    pub lanes: BTreeMap<(u64, u16), Vec<u8>>,
    pub tiles: BTreeMap<(u8, u64), Vec<u8>>,
    pub bundles: BTreeMap<u64, Vec<u8>>,
    pub checkpoints: BTreeMap<u64, Vec<u8>>,
    pub cursors: BTreeMap<String, Vec<u8>>,
    pub receipts: BTreeMap<String, Vec<u8>>,
    pub pruned_below: u64,
    pub prune_note: Option<Vec<u8>>,
}

impl Memory {
    /// An empty store for the log named `origin` (the gateway's key name).
    pub fn new(origin: &str) -> Memory {
        Memory { origin: origin.to_owned(), ..Memory::default() }
    }

    /// Sets the head without touching anything else, so tests can damage a store.
    pub fn set_size_for_test(&mut self, size: u64) {
        self.size = size;
    }
}

impl Store for Memory {
    fn size(&self) -> u64 {
        self.size
    }
    fn origin(&self) -> &str {
        &self.origin
    }

    fn append(&mut self, a: &Append) -> Result<(), StoreError> {
        check_append(self.size, a)?;
        for (height, b) in (a.log.old_size..).zip(&a.blocks) {
            self.headers.insert(height, b.header.clone());
            for (i, lane) in (0u16..).zip(&b.lanes) {
                self.lanes.insert((height, i), lane.clone());
            }
        }
        for (t, bytes) in &a.log.tiles {
            self.tiles.insert((t.level(), t.index()), bytes.clone());
        }
        for (t, bytes) in &a.log.bundles {
            self.bundles.insert(t.index(), bytes.clone());
        }
        self.checkpoints.insert(a.log.new_size, a.log.checkpoint.to_bytes());
        self.size = a.log.new_size;
        Ok(())
    }

    fn header(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.headers.get(&height).cloned())
    }
    fn lane(&self, height: u64, lane: u16) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lanes.get(&(height, lane)).cloned())
    }
    fn lanes(&self, height: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.lanes.range((height, 0)..=(height, u16::MAX)).map(|(_, v)| v.clone()).collect())
    }
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tiles.get(&(level, index)).cloned())
    }
    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.bundles.get(&index).cloned())
    }
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.checkpoints.last_key_value().map(|(_, v)| v.clone()))
    }
    fn checkpoint_at(&self, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.checkpoints.get(&size).cloned())
    }
    fn last_checkpoint_size(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.checkpoints.last_key_value().map(|(k, _)| *k))
    }
    fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self.checkpoints.keys().copied().collect())
    }
    fn last_heights(&self) -> Result<(Option<u64>, Option<u64>), StoreError> {
        Ok((
            self.headers.last_key_value().map(|(k, _)| *k),
            self.lanes.last_key_value().map(|((h, _), _)| *h),
        ))
    }
    fn pruned_below(&self) -> Result<u64, StoreError> {
        Ok(self.pruned_below)
    }
    fn prune_lanes(&mut self, below: u64, note: Option<&[u8]>) -> Result<Pruned, StoreError> {
        let Some(from) = check_prune(self.size, self.pruned_below, below)? else {
            return Ok(Pruned { from: self.pruned_below, below: self.pruned_below });
        };
        self.lanes.retain(|&(h, _), _| h >= below);
        self.pruned_below = below;
        if let Some(n) = note {
            self.prune_note = Some(n.to_vec());
        }
        Ok(Pruned { from, below })
    }
    fn prune_note(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.prune_note.clone())
    }
    /// Keys and values held, counted as the RocksDB store keys them.
    fn usage_bytes(&self) -> Result<Option<u64>, StoreError> {
        let n = |v: &Vec<u8>| v.len() as u64;
        let total = self.headers.values().map(|v| 8 + n(v)).sum::<u64>()
            + self.lanes.values().map(|v| 10 + n(v)).sum::<u64>()
            + self.tiles.values().map(|v| 9 + n(v)).sum::<u64>()
            + self.bundles.values().map(|v| 9 + n(v)).sum::<u64>()
            + self.checkpoints.values().map(|v| 8 + n(v)).sum::<u64>()
            + self
                .cursors
                .iter()
                .chain(&self.receipts)
                .map(|(k, v)| k.len() as u64 + n(v))
                .sum::<u64>();
        Ok(Some(total))
    }
    fn cursor(&self, ledger: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.cursors.get(ledger).cloned())
    }
    fn set_cursor(&mut self, ledger: &str, value: &[u8]) -> Result<(), StoreError> {
        self.cursors.insert(ledger.to_owned(), value.to_vec());
        Ok(())
    }
    fn receipt(&self, ledger: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.receipts.get(ledger).cloned())
    }
    fn set_receipt(&mut self, ledger: &str, value: &[u8]) -> Result<(), StoreError> {
        self.receipts.insert(ledger.to_owned(), value.to_vec());
        Ok(())
    }
}
