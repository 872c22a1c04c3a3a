//! Deterministic test blocks shared by the crash test, its child and the bench: the content of
//! height `h` is a function of `h`, so the parent can check what the child wrote.
#![allow(dead_code)]

use ledger::store::BlockData;

/// xorshift64*: cheap, deterministic filler bytes.
fn fill(seed: u64, len: usize) -> Vec<u8> {
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

/// Block `h`: a header naming its height, and `lanes` lanes of `lane_bytes` each.
pub fn block(h: u64, lanes: usize, lane_bytes: usize) -> BlockData {
    let mut header = format!("iov-test-block height={h} ").into_bytes();
    header.extend_from_slice(&fill(h, 200));
    BlockData {
        header,
        lanes: (0..lanes as u64).map(|i| fill(h * 1000 + i + 1, lane_bytes)).collect(),
    }
}
