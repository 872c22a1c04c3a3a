//! RFC 6962 / RFC 9162 SHA-256 Merkle tree: hashing, roots, inclusion and consistency proofs.
//!
//! Proof *generation* reads complete-subtree hashes through [`HashReader`], so a store, tiles
//! ([`crate::tile::TileReader`]) or the in-memory [`MemoryTree`] can back it. Proof
//! *verification* needs no reader: it is what an offline verifier runs.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Size of a SHA-256 hash in bytes.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash inside the Merkle tree (a leaf hash, a node hash or a root).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// Standard base64, as checkpoints and the public test vectors write hashes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses standard base64 of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Hash, HashError> {
        let bytes = STANDARD.decode(s).map_err(|e| HashError::Base64 { reason: e.to_string() })?;
        Hash::from_slice(&bytes)
    }

    /// Exactly 32 bytes, or an error naming the length.
    pub fn from_slice(bytes: &[u8]) -> Result<Hash, HashError> {
        let arr: [u8; HASH_SIZE] =
            bytes.try_into().map_err(|_| HashError::Length { len: bytes.len() })?;
        Ok(Hash(arr))
    }

    /// Lowercase hex, for log lines.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A hash that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    #[error("hash is not valid standard base64: {reason}")]
    Base64 { reason: String },
    #[error("hash is {len} bytes, want {HASH_SIZE}")]
    Length { len: usize },
}

/// RFC 6962 leaf hash: SHA-256(0x00 || data). The prefix keeps leaves and nodes apart.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// Root of a tree given all its leaf hashes (RFC 6962 MTH), without a reader.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&root_from_leaf_hashes(&leaves[..k]), &root_from_leaf_hashes(&leaves[k..]))
        }
    }
}

/// Source of complete-subtree hashes.
///
/// `node(level, index)` is the hash of the perfect subtree of `2^level` leaves starting at leaf
/// `index << level`. Proof generation only asks for subtrees that are complete within the tree
/// size it was given, so a reader that only knows one tree size can still answer.
pub trait HashReader {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        (**self).node(level, index)
    }
}

/// A hash a [`HashReader`] could not supply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("hash at level {level} index {index} is not stored")]
    Missing { level: u8, index: u64 },
    #[error("hash at level {level} index {index} could not be read: {reason}")]
    Backend { level: u8, index: u64, reason: String },
}

/// Why a proof or root could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    #[error("consistency proof needs 0 < size1 <= size2, got size1 {size1} size2 {size2}")]
    BadSizes { size1: u64, size2: u64 },
    #[error("reading tree hashes: {0}")]
    Read(#[from] ReadError),
}

/// Why a proof did not verify. Every variant says which input was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("leaf index {index} is not in a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    #[error("proof has {got} hashes, a proof for these sizes/indexes has {want}")]
    WrongProofLength { got: usize, want: usize },
    #[error("size1 {size1} is greater than size2 {size2}")]
    SizesOutOfOrder { size1: u64, size2: u64 },
    #[error("a consistency proof from the empty tree (size2 {size2}) proves nothing")]
    EmptyFirstTree { size2: u64 },
    #[error("{which} is {len} bytes, want {HASH_SIZE}")]
    HashLength { which: &'static str, len: usize },
    #[error("computed root {computed:?} does not match the expected root {expected:?}")]
    RootMismatch { computed: Hash, expected: Hash },
    #[error("computed first root {computed:?} does not match root1 {expected:?}")]
    FirstRootMismatch { computed: Hash, expected: Hash },
    #[error("computed second root {computed:?} does not match root2 {expected:?}")]
    SecondRootMismatch { computed: Hash, expected: Hash },
    #[error("trees of equal size {size} have different roots")]
    EqualSizeRootsDiffer { size: u64 },
}

/// Largest power of two strictly below `n` (n >= 2): the RFC 6962 split point `k`.
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[lo:hi])` from complete-subtree hashes. Every range the RFC recursion produces starts at
/// a multiple of its largest power-of-two part, so each perfect piece is one reader lookup.
fn subtree_root<R: HashReader + ?Sized>(r: &R, lo: u64, hi: u64) -> Result<Hash, ReadError> {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        let level = n.trailing_zeros() as u8;
        return r.node(level, lo >> level);
    }
    let k = largest_power_of_two_below(n);
    let left = subtree_root(r, lo, lo + k)?;
    let right = subtree_root(r, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// Root of the first `tree_size` leaves.
pub fn root<R: HashReader + ?Sized>(r: &R, tree_size: u64) -> Result<Hash, ProofError> {
    if tree_size == 0 {
        return Ok(empty_root());
    }
    Ok(subtree_root(r, 0, tree_size)?)
}

/// RFC 9162 §2.1.3.1 `PATH(m, D[n])`: audit path for leaf `index` in a tree of `tree_size`.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    r: &R,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let mut proof = Vec::with_capacity(64);
    path(r, index, 0, tree_size, &mut proof)?;
    Ok(proof)
}

/// Appends `PATH(m, D[lo:hi])` leaf-to-root (m relative to lo).
fn path<R: HashReader + ?Sized>(
    r: &R,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ReadError> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        path(r, m, lo, lo + k, out)?;
        out.push(subtree_root(r, lo + k, hi)?);
    } else {
        path(r, m - k, lo + k, hi, out)?;
        out.push(subtree_root(r, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.1 `PROOF(m, D[n])`: consistency proof from `size1` to `size2`.
/// Equal sizes give an empty proof; `size1 == 0` is refused (it proves nothing).
pub fn consistency_proof<R: HashReader + ?Sized>(
    r: &R,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProofError> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::BadSizes { size1, size2 });
    }
    let mut proof = Vec::with_capacity(64);
    subproof(r, size1, 0, size2, true, &mut proof)?;
    Ok(proof)
}

fn subproof<R: HashReader + ?Sized>(
    r: &R,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ReadError> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(subtree_root(r, lo, hi)?);
        }
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        subproof(r, m, lo, lo + k, whole, out)?;
        out.push(subtree_root(r, lo + k, hi)?);
    } else {
        subproof(r, m - k, lo + k, hi, false, out)?;
        out.push(subtree_root(r, lo, lo + k)?);
    }
    Ok(())
}

/// Number of hashes in an inclusion proof: levels where `index` and `size-1` differ (inner),
/// plus the left-border nodes above them.
fn inclusion_proof_len(index: u64, tree_size: u64) -> usize {
    let inner = 64 - (index ^ (tree_size - 1)).leading_zeros();
    // `inner` can be 64 when the top bit differs; a plain shift would overflow.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is at `index` in the tree of `tree_size` with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= tree_size {
        return Err(VerifyError::IndexOutOfRange { index, tree_size });
    }
    let want = inclusion_proof_len(index, tree_size);
    if proof.len() != want {
        return Err(VerifyError::WrongProofLength { got: proof.len(), want });
    }
    let computed = chain_inclusion(leaf, index, tree_size, proof)
        .ok_or(VerifyError::WrongProofLength { got: proof.len(), want })?;
    if computed != *root {
        return Err(VerifyError::RootMismatch { computed, expected: *root });
    }
    Ok(())
}

/// The RFC 9162 §2.1.3.2 loop; `None` when the proof does not fit the sizes.
fn chain_inclusion(leaf: &Hash, index: u64, tree_size: u64, proof: &[Hash]) -> Option<Hash> {
    let (mut fnode, mut snode) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// Number of hashes in a consistency proof from `size1` to `size2` (0 < size1 < size2).
fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    let inner = 64 - ((size1 - 1) ^ (size2 - 1)).leading_zeros();
    let border = (size1 - 1).checked_shr(inner).unwrap_or(0).count_ones();
    let shift = size1.trailing_zeros();
    let start = usize::from(!size1.is_power_of_two());
    start + (inner - shift) as usize + border as usize
}

/// RFC 9162 §2.1.4.2: checks that the tree of `size2` with `root2` extends the tree of `size1`
/// with `root1`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), VerifyError> {
    if size1 > size2 {
        return Err(VerifyError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == 0 {
        return Err(VerifyError::EmptyFirstTree { size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength { got: proof.len(), want: 0 });
        }
        if root1 != root2 {
            return Err(VerifyError::EqualSizeRootsDiffer { size: size1 });
        }
        return Ok(());
    }
    let want = consistency_proof_len(size1, size2);
    if proof.len() != want {
        return Err(VerifyError::WrongProofLength { got: proof.len(), want });
    }
    // Step 2: when size1 is a power of two its root is the first node of the path.
    let seeded: Vec<Hash>;
    let path: &[Hash] = if size1.is_power_of_two() {
        seeded = std::iter::once(*root1).chain(proof.iter().copied()).collect();
        &seeded
    } else {
        proof
    };
    let (first, rest) = path.split_first().ok_or(VerifyError::WrongProofLength { got: 0, want })?;
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(VerifyError::WrongProofLength { got: proof.len(), want });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(VerifyError::WrongProofLength { got: proof.len(), want });
    }
    if fr != *root1 {
        return Err(VerifyError::FirstRootMismatch { computed: fr, expected: *root1 });
    }
    if sr != *root2 {
        return Err(VerifyError::SecondRootMismatch { computed: sr, expected: *root2 });
    }
    Ok(())
}

fn hash_arg(which: &'static str, bytes: &[u8]) -> Result<Hash, VerifyError> {
    Hash::from_slice(bytes).map_err(|_| VerifyError::HashLength { which, len: bytes.len() })
}

/// [`verify_inclusion`] over untrusted byte strings, as they arrive off the wire.
pub fn verify_inclusion_bytes(
    leaf: &[u8],
    index: u64,
    tree_size: u64,
    proof: &[&[u8]],
    root: &[u8],
) -> Result<(), VerifyError> {
    let leaf = hash_arg("leaf hash", leaf)?;
    let root = hash_arg("root", root)?;
    let proof = proof.iter().map(|p| hash_arg("proof hash", p)).collect::<Result<Vec<_>, _>>()?;
    verify_inclusion(&leaf, index, tree_size, &proof, &root)
}

/// [`verify_consistency`] over untrusted byte strings. Equal sizes compare the roots as bytes
/// (no hashing happens, so the public vectors accept any equal strings there).
pub fn verify_consistency_bytes(
    size1: u64,
    size2: u64,
    proof: &[&[u8]],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), VerifyError> {
    if size1 > size2 {
        return Err(VerifyError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == 0 {
        return Err(VerifyError::EmptyFirstTree { size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength { got: proof.len(), want: 0 });
        }
        if root1 != root2 {
            return Err(VerifyError::EqualSizeRootsDiffer { size: size1 });
        }
        return Ok(());
    }
    let root1 = hash_arg("root1", root1)?;
    let root2 = hash_arg("root2", root2)?;
    let proof = proof.iter().map(|p| hash_arg("proof hash", p)).collect::<Result<Vec<_>, _>>()?;
    verify_consistency(size1, size2, &proof, &root1, &root2)
}

/// Append-only in-memory tree that keeps every complete-subtree hash: the reference reader for
/// tests, examples and tile building.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` = hash of leaves `[i << l, (i + 1) << l)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Builds a tree from leaf hashes.
    pub fn from_leaf_hashes(leaves: impl IntoIterator<Item = Hash>) -> MemoryTree {
        let mut t = MemoryTree::new();
        for h in leaves {
            t.push_leaf_hash(h);
        }
        t
    }

    /// Appends a leaf by its data; returns its index.
    pub fn push(&mut self, data: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(data))
    }

    /// Appends a leaf by its hash; returns its index.
    pub fn push_leaf_hash(&mut self, h: Hash) -> u64 {
        let index = self.size();
        let mut cur = h;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(cur);
            let len = self.levels[level].len();
            if len % 2 == 1 {
                break;
            }
            cur = node_hash(&self.levels[level][len - 2], &self.levels[level][len - 1]);
            level += 1;
        }
        index
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Current root.
    pub fn root(&self) -> Hash {
        root(self, self.size()).expect("a MemoryTree holds every node up to its own size")
    }
}

impl HashReader for MemoryTree {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        self.levels
            .get(usize::from(level))
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(ReadError::Missing { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(&i.to_be_bytes());
        }
        t
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(empty_root().to_base64(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(MemoryTree::new().root(), empty_root());
    }

    #[test]
    fn reader_root_equals_recursive_root_for_sizes_up_to_300() {
        let t = tree(300);
        let leaves: Vec<Hash> = (0..300u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 0..=300u64 {
            assert_eq!(root(&t, n).unwrap(), root_from_leaf_hashes(&leaves[..n as usize]), "n={n}");
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_has_the_predicted_length() {
        let t = tree(70);
        for n in 1..=70u64 {
            let r = root(&t, n).unwrap();
            for i in 0..n {
                let p = inclusion_proof(&t, i, n).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(i, n));
                verify_inclusion(&leaf_hash(&i.to_be_bytes()), i, n, &p, &r).unwrap();
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_has_the_predicted_length() {
        let t = tree(70);
        for n2 in 1..=70u64 {
            let r2 = root(&t, n2).unwrap();
            for n1 in 1..=n2 {
                let r1 = root(&t, n1).unwrap();
                let p = consistency_proof(&t, n1, n2).unwrap();
                if n1 < n2 {
                    assert_eq!(p.len(), consistency_proof_len(n1, n2), "{n1}->{n2}");
                }
                verify_consistency(n1, n2, &p, &r1, &r2).unwrap();
            }
        }
    }

    #[test]
    fn inclusion_proof_for_a_leaf_past_the_end_is_refused() {
        let t = tree(5);
        assert_eq!(
            inclusion_proof(&t, 5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, tree_size: 5 })
        );
    }

    #[test]
    fn proof_against_a_reader_missing_hashes_names_the_missing_node() {
        let t = tree(4);
        let err = inclusion_proof(&t, 0, 8).unwrap_err();
        assert!(matches!(err, ProofError::Read(ReadError::Missing { .. })), "{err}");
    }

    #[test]
    fn proof_lengths_for_trees_near_2_pow_64_do_not_overflow() {
        // Found by tests/untrusted_input.rs: `index >> 64` used to panic.
        let size = (1u64 << 63) + 1;
        let got = verify_inclusion(&Hash::default(), 1 << 63, size, &[], &Hash::default());
        assert_eq!(got, Err(VerifyError::WrongProofLength { got: 0, want: 1 }));
        let got = verify_consistency(1 << 63, u64::MAX, &[], &Hash::default(), &Hash::default());
        assert!(matches!(got, Err(VerifyError::WrongProofLength { got: 0, .. })), "{got:?}");
    }

    #[test]
    fn wrong_leaf_is_reported_as_root_mismatch() {
        let t = tree(10);
        let p = inclusion_proof(&t, 3, 10).unwrap();
        let err = verify_inclusion(&leaf_hash(b"x"), 3, 10, &p, &t.root()).unwrap_err();
        assert!(matches!(err, VerifyError::RootMismatch { .. }), "{err}");
    }
}
