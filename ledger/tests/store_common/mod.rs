//! Deterministic test blocks for the store tests: the lanes of height `h` are a function of `h`
//! and headers chain from height 0, so a parent can recompute what a child process wrote.
#![allow(dead_code)]

use ledger::store::{testing, BlockData};

/// xorshift64*: cheap, deterministic filler bytes.
pub fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `lanes` lanes of `lane_bytes` each for height `h`.
pub fn lanes(h: u64, lanes: usize, lane_bytes: usize) -> Vec<Vec<u8>> {
    (0..lanes as u64).map(|i| fill(h * 1000 + i + 1, lane_bytes)).collect()
}

/// The expected chain, extended on demand.
pub struct Expected {
    gateway: [u8; 32],
    lanes: usize,
    lane_bytes: usize,
    blocks: Vec<BlockData>,
}

impl Expected {
    pub fn new(gateway: [u8; 32], lanes: usize, lane_bytes: usize) -> Expected {
        Expected { gateway, lanes, lane_bytes, blocks: Vec::new() }
    }

    pub fn block(&mut self, h: u64) -> &BlockData {
        while self.blocks.len() as u64 <= h {
            let n = self.blocks.len() as u64;
            let prev = self.blocks.last().map(|b| b.header.as_slice());
            let (k, b) = (self.lanes, self.lane_bytes);
            let next = testing::chained_block(self.gateway, n, prev, lanes(n, k, b));
            self.blocks.push(next);
        }
        &self.blocks[h as usize]
    }
}
