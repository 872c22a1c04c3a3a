//! The loader never panics, whatever the bytes: random input and mutations of a real file.

use can_decoders::dbc::{parse_bytes, LoadOptions};
use proptest::prelude::*;

const SEED: &[u8] = include_bytes!("../../fixtures/dbc/cantools/motohawk_with_comments.dbc");
const MUX_SEED: &[u8] =
    include_bytes!("../../fixtures/dbc/cantools/issue_184_extended_mux_cascaded.dbc");

fn load_both_ways(bytes: &[u8]) {
    for strict in [false, true] {
        let _ = parse_bytes(bytes, None, &LoadOptions { strict });
    }
}

/// Replace, insert or delete bytes at random places, with bytes that matter to the grammar.
fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\":;|@+-()[],\n 0123456789.eEmMx_\\\x80\xff\xc3";
    let mut out = seed.to_vec();
    for &(pos, op, b) in edits {
        if out.is_empty() {
            out.push(b);
            continue;
        }
        let pos = pos % out.len();
        let byte = if b % 2 == 0 { INTERESTING[usize::from(b) % INTERESTING.len()] } else { b };
        match op % 3 {
            0 => out[pos] = byte,
            1 => out.insert(pos, byte),
            _ => {
                out.remove(pos);
            }
        }
    }
    out
}

proptest! {
    // `PROPTEST_CASES=100000` for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        load_both_ways(&bytes);
    }

    #[test]
    fn mutated_real_dbc_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..40)) {
        load_both_ways(&mutate(SEED, &edits));
        load_both_ways(&mutate(MUX_SEED, &edits));
    }

    #[test]
    fn dbc_shaped_lines_never_panic(lines in proptest::collection::vec(
        "(BO_|SG_|CM_|BA_|BA_DEF_|VAL_|SG_MUL_VAL_|SIG_VALTYPE_|BO_TX_BU_|BU_:|NS_ :) [ -~]{0,60}", 0..30)) {
        load_both_ways(lines.join("\n").as_bytes());
    }
}

#[test]
fn truncating_a_real_dbc_anywhere_never_panics() {
    for end in 0..SEED.len() {
        load_both_ways(&SEED[..end]);
    }
}
