//! Inclusion and consistency proofs as untrusted bytes (hashes of any length, any sizes and
//! indexes up to 2^64 - 1): an error or Ok, never a panic. Against a real small tree, a proof
//! that verifies is the one the tree generates.
#![no_main]
use ledger::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency_bytes,
    verify_inclusion_bytes, MemoryTree,
};
use libfuzzer_sys::arbitrary::{Error, Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Mostly small numbers near interesting edges, sometimes anything.
fn number(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => u.int_in_range(0..=70)?,
        1 => u64::MAX - u64::from(u.int_in_range(0u8..=3)?),
        2 => (1u64 << u.int_in_range(0u32..=63)?).wrapping_add(u.int_in_range(0..=2)?),
        _ => u.arbitrary()?,
    })
}

fn pieces<'a>(u: &mut Unstructured<'a>) -> Result<Vec<&'a [u8]>> {
    let n = u.int_in_range(0usize..=70)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let len = if u.ratio(15u8, 16u8)? { 32 } else { u.int_in_range(0usize..=40)? };
        v.push(u.bytes(len)?);
    }
    Ok(v)
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let oracle = u.arbitrary::<bool>()?;
    if oracle {
        // A real tree of up to 64 leaves; the fuzzer supplies the proof.
        let n = u.int_in_range(1u64..=64)?;
        let t = MemoryTree::from_leaf_hashes((0..n).map(|i| leaf_hash(&i.to_be_bytes())));
        let proof = pieces(&mut u)?;
        let r = t.root();
        if u.arbitrary::<bool>()? {
            let i = u.int_in_range(0..=n - 1)?;
            let leaf = leaf_hash(&i.to_be_bytes());
            if verify_inclusion_bytes(&leaf.0, i, n, &proof, &r.0).is_ok() {
                let want = inclusion_proof(&t, i, n).map_err(|_| Error::IncorrectFormat)?;
                let got: Vec<&[u8]> = want.iter().map(|h| h.0.as_slice()).collect();
                assert_eq!(got, proof, "a different inclusion proof verified");
            }
        } else {
            let m = u.int_in_range(1..=n)?;
            let rm = root(&t, m).map_err(|_| Error::IncorrectFormat)?;
            if verify_consistency_bytes(m, n, &proof, &rm.0, &r.0).is_ok() {
                let want = consistency_proof(&t, m, n).map_err(|_| Error::IncorrectFormat)?;
                let got: Vec<&[u8]> = want.iter().map(|h| h.0.as_slice()).collect();
                assert_eq!(got, proof, "a different consistency proof verified");
            }
        }
        return Ok(());
    }
    let (a, b) = (number(&mut u)?, number(&mut u)?);
    let leaf_len = if u.ratio(7u8, 8u8)? { 32 } else { 31 };
    let leaf = u.bytes(leaf_len)?;
    let r1 = u.bytes(32)?;
    let r2_len = if u.ratio(7u8, 8u8)? { 32 } else { 33 };
    let r2 = u.bytes(r2_len)?;
    let proof = pieces(&mut u)?;
    let _ = verify_inclusion_bytes(leaf, a, b, &proof, r1);
    let _ = verify_consistency_bytes(a, b, &proof, r1, r2);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
