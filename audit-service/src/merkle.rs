//! The Merkle tree of RFC 9162 (Certificate Transparency v2) §2.1: leaf and node
//! hashes, the Merkle Tree Hash (MTH), inclusion proofs (§2.1.3) and consistency proofs
//! (§2.1.4), and the verification algorithms of §2.1.3.2 and §2.1.4.2.
//!
//! [`Tree`] keeps every perfect subtree hash in memory, by level: level 0 holds the
//! leaf hashes, level `k` the hashes of the aligned subtrees of `2^k` leaves. Any root
//! and every hash a proof needs is then a handful of look-ups, so a proof costs
//! O(log n) however large the log (about 64 bytes per leaf: 64 MB for a million).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// MTH({}) = SHA-256().
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly less than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The MTH of `leaves`, by the recursive definition of RFC 9162 §2.1.1 (for tests and
/// small trees; [`Tree`] is the fast way).
pub fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let n = u64::try_from(leaves.len()).unwrap_or(u64::MAX);
            let k = usize::try_from(split(n)).unwrap_or(usize::MAX);
            let (left, right) = leaves.split_at(k.min(leaves.len()));
            node_hash(&naive_root(left), &naive_root(right))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("tree size {requested} is beyond the tree's {available} leaves")]
    BeyondTree { requested: u64, available: u64 },
    #[error("leaf index {index} is not below tree size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    #[error("from_size {from} must be between 1 and to_size {to}")]
    BadRange { from: u64, to: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("leaf index {index} is not below tree size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    #[error("the proof has the wrong length")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("from_size {from} is greater than to_size {to}")]
    BadRange { from: u64, to: u64 },
}

/// The perfect subtree hashes of a log, level by level.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of `leaves`.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push(leaf);
        }
        tree
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| to_u64(l.len()))
    }

    /// Appends a leaf hash; completes the perfect subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(hash);
            if row.len() % 2 == 1 {
                return;
            }
            match row.as_slice() {
                [.., left, right] => hash = node_hash(left, right),
                _ => return,
            }
            level += 1;
        }
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.perfect(0, index)
    }

    /// The hash of the aligned perfect subtree of `2^level` leaves number `index`.
    fn perfect(&self, level: u32, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(index).ok()?).copied()
    }

    /// The MTH of leaves `[start, start + size)`, `size >= 1`, where `start` is a
    /// multiple of the largest power of two not above `size` (true of every subtree
    /// the proofs of RFC 9162 visit): its perfect subtrees, largest first, folded from
    /// the right.
    fn range_hash(&self, start: u64, size: u64) -> Hash {
        let mut parts: Vec<Hash> = Vec::with_capacity(64);
        let mut offset = start;
        for bit in (0..64u32).rev() {
            let chunk = 1u64 << bit;
            if size & chunk == 0 {
                continue;
            }
            let hash = if offset % chunk == 0 {
                self.perfect(bit, offset >> bit)
            } else {
                None
            };
            // Unaligned or missing (never, for a size within the tree): computed.
            parts.push(hash.unwrap_or_else(|| self.slow_range(offset, chunk)));
            offset += chunk;
        }
        let mut parts = parts.into_iter().rev();
        let Some(mut acc) = parts.next() else {
            return empty_root();
        };
        for left in parts {
            acc = node_hash(&left, &acc);
        }
        acc
    }

    /// The recursive MTH over leaves `[start, start + size)`.
    fn slow_range(&self, start: u64, size: u64) -> Hash {
        if size <= 1 {
            return self.leaf(start).unwrap_or_else(empty_root);
        }
        let k = split(size);
        node_hash(
            &self.slow_range(start, k),
            &self.slow_range(start + k, size - k),
        )
    }

    fn check_size(&self, tree_size: u64) -> Result<(), ProofError> {
        if tree_size > self.size() {
            Err(ProofError::BeyondTree {
                requested: tree_size,
                available: self.size(),
            })
        } else {
            Ok(())
        }
    }

    /// MTH(D[0:tree_size]).
    pub fn root(&self, tree_size: u64) -> Result<Hash, ProofError> {
        self.check_size(tree_size)?;
        if tree_size == 0 {
            return Ok(empty_root());
        }
        Ok(self.range_hash(0, tree_size))
    }

    /// PATH(index, D[0:tree_size]) of RFC 9162 §2.1.3.1, leaf side first.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(tree_size)?;
        if index >= tree_size {
            return Err(ProofError::IndexOutOfRange { index, tree_size });
        }
        let (mut start, mut n, mut m) = (0u64, tree_size, index);
        let mut path = Vec::new();
        while n > 1 {
            let k = split(n);
            if m < k {
                path.push(self.range_hash(start + k, n - k));
                n = k;
            } else {
                path.push(self.range_hash(start, k));
                start += k;
                m -= k;
                n -= k;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// PROOF(from, D[0:to]) of RFC 9162 §2.1.4.1 (empty when `from == to`).
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(to)?;
        if from == 0 || from > to {
            return Err(ProofError::BadRange { from, to });
        }
        let (mut start, mut n, mut m, mut complete) = (0u64, to, from, true);
        let mut path = Vec::new();
        loop {
            if m == n {
                if !complete {
                    path.push(self.range_hash(start, n));
                }
                break;
            }
            let k = split(n);
            if m <= k {
                path.push(self.range_hash(start + k, n - k));
                n = k;
            } else {
                path.push(self.range_hash(start, k));
                start += k;
                m -= k;
                n -= k;
                complete = false;
            }
        }
        path.reverse();
        Ok(path)
    }
}

/// RFC 9162 §2.1.3.2: whether `path` proves leaf `leaf` at `index` in the tree of
/// `tree_size` leaves with root `root`.
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= tree_size {
        return Err(VerifyError::IndexOutOfRange { index, tree_size });
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return Err(VerifyError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(VerifyError::WrongLength);
    }
    if &r != root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: whether `path` proves the tree of `from` leaves with root
/// `first` a prefix of the tree of `to` leaves with root `second`. (`from == to` needs
/// an empty proof and equal roots; `from == 0` an empty proof.)
pub fn verify_consistency(
    from: u64,
    to: u64,
    first: &Hash,
    second: &Hash,
    path: &[Hash],
) -> Result<(), VerifyError> {
    if from > to {
        return Err(VerifyError::BadRange { from, to });
    }
    if from == to {
        if !path.is_empty() {
            return Err(VerifyError::WrongLength);
        }
        return if first == second {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    if from == 0 {
        return if path.is_empty() {
            Ok(())
        } else {
            Err(VerifyError::WrongLength)
        };
    }
    // 1. An empty proof proves nothing for 0 < from < to.
    if path.is_empty() {
        return Err(VerifyError::WrongLength);
    }
    // 2. A power-of-two first tree is itself the first node of the proof.
    let mut nodes: Vec<Hash> = Vec::with_capacity(path.len() + 1);
    if from.is_power_of_two() {
        nodes.push(*first);
    }
    nodes.extend_from_slice(path);
    // 3., 4.
    let (mut fn_, mut sn) = (from - 1, to - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    let Some((head, rest)) = nodes.split_first() else {
        return Err(VerifyError::WrongLength);
    };
    let (mut fr, mut sr) = (*head, *head);
    // 6.
    for c in rest {
        if sn == 0 {
            return Err(VerifyError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7.
    if sn != 0 {
        return Err(VerifyError::WrongLength);
    }
    if &fr != first || &sr != second {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// RFC 9162's own recursive PATH, for comparison.
    fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return vec![];
        }
        let k = split(d.len() as u64) as usize;
        if m < k {
            let mut p = naive_path(m, &d[..k]);
            p.push(naive_root(&d[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &d[k..]);
            p.push(naive_root(&d[..k]));
            p
        }
    }

    fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        if m == d.len() {
            return if b { vec![] } else { vec![naive_root(d)] };
        }
        let k = split(d.len() as u64) as usize;
        if m <= k {
            let mut p = naive_subproof(m, &d[..k], b);
            p.push(naive_root(&d[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &d[k..], false);
            p.push(naive_root(&d[..k]));
            p
        }
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ] {
            assert_eq!(split(n), k, "{n}");
        }
    }

    #[test]
    fn known_answers() {
        // The empty tree is SHA-256 of nothing.
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // A leaf of the empty string: SHA-256(0x00).
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let t = Tree::from_leaves(leaves(3));
        let l = leaves(3);
        assert_eq!(
            t.root(3).unwrap(),
            node_hash(&node_hash(&l[0], &l[1]), &l[2])
        );
    }

    #[test]
    fn every_proof_of_every_size_up_to_64_verifies_and_matches_the_rfc() {
        let all = leaves(65);
        let tree = Tree::from_leaves(all.clone());
        for n in 1..=64u64 {
            let d = &all[..n as usize];
            let root = tree.root(n).unwrap();
            let next_root = tree.root(n + 1).unwrap();
            assert_eq!(root, naive_root(d), "root of {n}");
            for m in 0..n {
                let path = tree.inclusion_proof(m, n).unwrap();
                assert_eq!(path, naive_path(m as usize, d), "PATH({m}, {n})");
                verify_inclusion(m, n, &all[m as usize], &path, &root).unwrap();
                // Wrong leaf, wrong index, wrong root, wrong size fail.
                assert!(verify_inclusion(m, n, &leaf_hash(b"x"), &path, &root).is_err());
                if n > 1 {
                    assert!(
                        verify_inclusion((m + 1) % n, n, &all[m as usize], &path, &root).is_err()
                    );
                }
                assert!(verify_inclusion(m, n, &all[m as usize], &path, &empty_root()).is_err());
                // (The same path may also fit a neighbouring size: a root is only
                // meaningful with the size its signed checkpoint gives it.)
                assert!(verify_inclusion(m, n + 1, &all[m as usize], &path, &next_root).is_err());
            }
            for m in 1..=n {
                let proof = tree.consistency_proof(m, n).unwrap();
                let expected = if m == n {
                    vec![]
                } else {
                    naive_subproof(m as usize, d, true)
                };
                assert_eq!(proof, expected, "PROOF({m}, {n})");
                let first = tree.root(m).unwrap();
                verify_consistency(m, n, &first, &root, &proof).unwrap();
                if m < n {
                    assert!(verify_consistency(m, n, &root, &root, &proof).is_err());
                    assert!(verify_consistency(m, n, &first, &first, &proof).is_err());
                    assert!(verify_consistency(m, n, &first, &root, &[]).is_err());
                    assert!(
                        verify_consistency(m + 1, n, &first, &root, &proof).is_err() || m + 1 == n
                    );
                }
            }
        }
    }

    #[test]
    fn out_of_range_requests_are_errors() {
        let tree = Tree::from_leaves(leaves(5));
        assert!(matches!(tree.root(6), Err(ProofError::BeyondTree { .. })));
        assert!(matches!(
            tree.inclusion_proof(5, 5),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert!(tree.inclusion_proof(0, 6).is_err());
        assert!(tree.consistency_proof(0, 5).is_err());
        assert!(tree.consistency_proof(4, 3).is_err());
        assert!(tree.consistency_proof(3, 6).is_err());
        assert_eq!(tree.root(0).unwrap(), empty_root());
        assert_eq!(Tree::new().size(), 0);
    }

    #[test]
    fn a_large_tree_answers_quickly() {
        let tree = Tree::from_leaves(leaves(100_003));
        let n = tree.size();
        let root = tree.root(n).unwrap();
        for m in [0, 1, 65_535, 65_536, 99_999, n - 1] {
            let path = tree.inclusion_proof(m, n).unwrap();
            verify_inclusion(m, n, &tree.leaf(m).unwrap(), &path, &root).unwrap();
        }
        for m in [1, 2, 3, 1000, 65_536, 77_777, n] {
            let proof = tree.consistency_proof(m, n).unwrap();
            verify_consistency(m, n, &tree.root(m).unwrap(), &root, &proof).unwrap();
        }
    }

    proptest! {
        #[test]
        fn tampered_proofs_fail(n in 2u64..200, seed in any::<u64>(), flip in any::<u8>()) {
            let tree = Tree::from_leaves(leaves(n));
            let m = seed % n;
            let root = tree.root(n).unwrap();
            let mut path = tree.inclusion_proof(m, n).unwrap();
            prop_assume!(!path.is_empty());
            let at = (seed as usize / 7) % path.len();
            path[at][usize::from(flip) % 32] ^= 1 << (flip % 8);
            prop_assert!(verify_inclusion(m, n, &tree.leaf(m).unwrap(), &path, &root).is_err());
            // A truncated or extended proof fails too.
            let mut good = tree.inclusion_proof(m, n).unwrap();
            good.pop();
            prop_assert!(verify_inclusion(m, n, &tree.leaf(m).unwrap(), &good, &root).is_err());

            let from = 1 + seed % (n - 1);
            let mut proof = tree.consistency_proof(from, n).unwrap();
            let first = tree.root(from).unwrap();
            let at = (seed as usize / 13) % proof.len();
            proof[at][usize::from(flip) % 32] ^= 1 << (flip % 8);
            prop_assert!(verify_consistency(from, n, &first, &root, &proof).is_err());
            let mut longer = tree.consistency_proof(from, n).unwrap();
            longer.push(root);
            prop_assert!(verify_consistency(from, n, &first, &root, &longer).is_err());
        }

        #[test]
        fn roots_match_the_recursive_definition(n in 0u64..300) {
            let l = leaves(n);
            let tree = Tree::from_leaves(l.clone());
            for size in [n / 3, n / 2, n] {
                prop_assert_eq!(tree.root(size).unwrap(), naive_root(&l[..size as usize]));
            }
        }

        #[test]
        fn proofs_between_random_sizes_verify(to in 1u64..2000, a in any::<u64>(), b in any::<u64>()) {
            let tree = Tree::from_leaves(leaves(to));
            let from = 1 + a % to;
            let m = b % to;
            let root = tree.root(to).unwrap();
            let proof = tree.consistency_proof(from, to).unwrap();
            prop_assert!(verify_consistency(from, to, &tree.root(from).unwrap(), &root, &proof).is_ok());
            let path = tree.inclusion_proof(m, to).unwrap();
            prop_assert!(verify_inclusion(m, to, &tree.leaf(m).unwrap(), &path, &root).is_ok());
        }
    }
}
