//! Untrusted header + lane ciphertext: `u16 BE header length || header || ciphertext`. The
//! header's lane-0 digest and size are forged to match the ciphertext so the fuzzer reaches the
//! prefix, binding, HPKE and AEAD checks; opening never panics. Seeds come from
//! `fixtures/vectors/block-v1.json` (recipient "factory", secret 32 x 0x21).
#![no_main]
use ledger::block::BlockHeader;
use ledger::keys::X25519Key;
use ledger::lane::Limits;
use ledger::seal::open_lane_bytes;
use libfuzzer_sys::fuzz_target;
use x25519_dalek::StaticSecret;

const LIMITS: Limits = Limits { max_plain_bytes: 1 << 20, max_records: 1 << 16 };

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return;
    }
    let (hb, ct) = rest.split_at(len);
    let Ok(mut header) = BlockHeader::from_bytes(hb) else { return };
    let Ok(key) = X25519Key::new("factory", StaticSecret::from([0x21; 32])) else { return };
    for i in 0..header.lanes.len() {
        let _ = open_lane_bytes(&header, i, ct, &key, &LIMITS);
    }
    if let Some(lane) = header.lanes.first_mut() {
        lane.digest = *blake3::hash(ct).as_bytes();
        lane.size = ct.len() as u64;
        let _ = open_lane_bytes(&header, 0, ct, &key, &LIMITS);
    }
});
