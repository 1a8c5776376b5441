//! Range-based set reconciliation of envelope IDs (the negentropy idea).
//!
//! Two nodes that meet learn which envelopes each lacks with traffic that
//! grows with the *difference* of their sets, not their size. The sorted ID
//! space is cut into ranges; for each range a side sends either a
//! fingerprint (16 bytes: SHA-256 of the sum of the IDs mod 2^256 and the
//! count) or, for small ranges, the IDs themselves. Equal fingerprints end a
//! range; different ones split it into [`BRANCHING`] sub-ranges, recursively,
//! so a difference of `d` IDs among `n` costs O(d · log n) fingerprints plus
//! the differing IDs, in O(log n) round trips.
//!
//! The initiator learns both directions: `need` (IDs it lacks) and `have`
//! (IDs the responder lacks). It then pulls `need` and pushes `have`.
//! Range bounds are the shortest ID prefixes that separate neighbours, so a
//! bound costs 2–3 bytes in sets of thousands.
//!
//! Sans-IO and stateless per round: each side rebuilds nothing between
//! rounds but its sorted ID list ([`IdSet`]).

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::{
    crypto::tags::ContentId,
    proto::{
        limits::{CONTENT_ID_LEN, FINGERPRINT_LEN, MAX_IDS_PER_FRAME, MAX_RECONCILE_RANGES},
        v1::{self, reconcile_range::Payload},
    },
};

/// Sub-ranges a mismatching range is split into.
pub const BRANCHING: usize = 16;
/// Ranges with at most this many IDs are sent as ID lists, not fingerprints.
pub const LIST_THRESHOLD: usize = 8;

/// A peer's reconciliation message breaks the protocol.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconcileError {
    /// Range bounds are not strictly increasing or do not end at infinity.
    #[error("reconciliation ranges are not in order or do not cover the ID space")]
    BadRanges,
    /// The reply would exceed the frame limits (too many ranges or IDs).
    #[error("reconciliation reply exceeds frame limits")]
    TooLarge,
}

/// Which side of a reconciliation this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the first message; learns `have` and `need`.
    Initiator,
    /// Answers.
    Responder,
}

/// What one round produced.
#[derive(Debug, Default)]
pub struct RoundOutcome {
    /// The message to send back, or `None` if reconciliation is complete.
    pub reply: Option<v1::Reconcile>,
    /// IDs we have and the peer lacks (initiator only).
    pub have: Vec<ContentId>,
    /// IDs the peer has and we lack (initiator only).
    pub need: Vec<ContentId>,
    /// Ranges of our set (indices into [`IdSet::ids`], end exclusive) whose
    /// fingerprint the peer's message matched: the peer holds all of them.
    pub matched: Vec<(usize, usize)>,
    /// IDs that both our set and an ID list in the peer's message hold.
    pub common: Vec<ContentId>,
}

impl RoundOutcome {
    /// Whether the peer's message says it holds `id`, the ID at index
    /// `index` of our set. `matched` is in set order and `common` sorted
    /// and deduplicated (as [`IdSet::process`] leaves them): two binary
    /// searches, whatever the peer sent.
    pub fn peer_holds(&self, id: &ContentId, index: usize) -> bool {
        let range = self.matched.partition_point(|&(_, end)| end <= index);
        self.matched
            .get(range)
            .is_some_and(|&(start, end)| (start..end).contains(&index))
            || self.common.binary_search(id).is_ok()
    }
}

/// A sorted, deduplicated set of IDs with prefix sums for O(1) fingerprints.
#[derive(Debug, Clone)]
pub struct IdSet {
    ids: Vec<ContentId>,
    /// `sums[i]` = sum of `ids[..i]` mod 2^256, as little-endian u64 limbs.
    sums: Vec<[u64; 4]>,
}

fn limbs(id: &ContentId) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (limb, chunk) in out.iter_mut().zip(id.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(bytes);
    }
    out
}

fn add(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    let mut out = [0u64; 4];
    let mut carry = false;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let (s1, c1) = x.overflowing_add(y);
        let (s2, c2) = s1.overflowing_add(u64::from(carry));
        *o = s2;
        carry = c1 || c2;
    }
    out
}

fn sub(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
        *o = d2;
        borrow = b1 || b2;
    }
    out
}

/// Whether `id` lies below the exclusive bound `bound` (empty = infinity).
fn below(id: &ContentId, bound: &[u8]) -> bool {
    bound.is_empty() || id.get(..bound.len()).is_some_and(|p| p < bound)
}

/// The shortest prefix `p` of `upper` with `lower < p <= upper`.
fn separating_prefix(lower: &ContentId, upper: &ContentId) -> Vec<u8> {
    let common = lower
        .iter()
        .zip(upper.iter())
        .take_while(|(a, b)| a == b)
        .count();
    upper
        .get(..(common + 1).min(CONTENT_ID_LEN))
        .unwrap_or(upper.as_slice())
        .to_vec()
}

impl IdSet {
    /// Builds the set (sorts and deduplicates).
    pub fn new(mut ids: Vec<ContentId>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Self::from_sorted_unique(ids)
    }

    /// Builds the set from IDs already sorted and unique (e.g. from a
    /// `BTreeSet`), in linear time. Unsorted input gives wrong answers, not
    /// a panic.
    pub fn from_sorted_unique(ids: Vec<ContentId>) -> Self {
        let mut sums = Vec::with_capacity(ids.len() + 1);
        let mut acc = [0u64; 4];
        sums.push(acc);
        for id in &ids {
            acc = add(acc, limbs(id));
            sums.push(acc);
        }
        Self { ids, sums }
    }

    /// Number of IDs.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The IDs, sorted.
    pub fn ids(&self) -> &[ContentId] {
        &self.ids
    }

    /// Index of the first ID not below `bound`.
    fn position(&self, bound: &[u8]) -> usize {
        self.ids.partition_point(|id| below(id, bound))
    }

    fn fingerprint(&self, start: usize, end: usize) -> v1::Fingerprint {
        let sum = match (self.sums.get(end), self.sums.get(start)) {
            (Some(e), Some(s)) => sub(*e, *s),
            _ => [0; 4],
        };
        let count = (end - start) as u64;
        let mut hash = Sha256::new();
        for limb in sum {
            hash.update(limb.to_le_bytes());
        }
        hash.update(count.to_le_bytes());
        let digest = hash.finalize();
        v1::Fingerprint {
            digest: digest.get(..FINGERPRINT_LEN).unwrap_or_default().to_vec(),
            count,
        }
    }

    fn slice(&self, start: usize, end: usize) -> &[ContentId] {
        self.ids.get(start..end).unwrap_or_default()
    }

    /// Describes `[start, end)` (upper bound `upper`) as a list or as
    /// fingerprinted sub-ranges.
    fn describe(&self, start: usize, end: usize, upper: &[u8], out: &mut Vec<v1::ReconcileRange>) {
        let n = end - start;
        if n <= LIST_THRESHOLD {
            out.push(v1::ReconcileRange {
                upper_bound: upper.to_vec(),
                payload: Some(Payload::IdList(self.slice(start, end).concat())),
            });
            return;
        }
        let mut lo = start;
        for k in 1..=BRANCHING {
            let hi = if k == BRANCHING {
                end
            } else {
                start + n * k / BRANCHING
            };
            if hi == lo {
                continue;
            }
            let bound = match (k == BRANCHING, self.ids.get(hi - 1), self.ids.get(hi)) {
                (false, Some(a), Some(b)) => separating_prefix(a, b),
                _ => upper.to_vec(),
            };
            out.push(v1::ReconcileRange {
                upper_bound: bound,
                payload: Some(Payload::Fingerprint(self.fingerprint(lo, hi))),
            });
            lo = hi;
        }
    }

    /// The first message of a reconciliation (initiator).
    pub fn initiate(&self) -> v1::Reconcile {
        let mut ranges = Vec::new();
        self.describe(0, self.ids.len(), &[], &mut ranges);
        v1::Reconcile { ranges }
    }

    /// Processes a peer's message and produces the reply.
    ///
    /// # Errors
    /// [`ReconcileError`] if the message breaks the protocol.
    pub fn process(
        &self,
        message: &v1::Reconcile,
        role: Role,
    ) -> Result<RoundOutcome, ReconcileError> {
        let mut outcome = RoundOutcome::default();
        let mut out: Vec<v1::ReconcileRange> = Vec::new();
        let mut lower: Vec<u8> = Vec::new();
        let mut start = 0usize;
        let count = message.ranges.len();
        for (i, range) in message.ranges.iter().enumerate() {
            let upper = range.upper_bound.as_slice();
            let last = i + 1 == count;
            // Bounds strictly increase; only the last one is infinity.
            if (upper.is_empty() != last)
                || (!upper.is_empty() && i > 0 && upper <= lower.as_slice())
            {
                return Err(ReconcileError::BadRanges);
            }
            let end = self.position(upper);
            let end = end.max(start);
            match &range.payload {
                Some(Payload::Skip(_)) | None => push_skip(&mut out, upper),
                Some(Payload::Fingerprint(theirs)) => {
                    let ours = self.fingerprint(start, end);
                    if ours.digest == theirs.digest && ours.count == theirs.count {
                        if end > start {
                            outcome.matched.push((start, end));
                        }
                        push_skip(&mut out, upper);
                    } else {
                        self.describe(start, end, upper, &mut out);
                    }
                }
                Some(Payload::IdList(concat)) => {
                    let theirs: Vec<ContentId> = concat
                        .chunks_exact(CONTENT_ID_LEN)
                        .filter_map(|c| ContentId::try_from(c).ok())
                        .collect();
                    let ours = self.slice(start, end);
                    // Theirs into ours (sorted): O(m log n) whatever the
                    // peer sends.
                    outcome.common.extend(
                        theirs
                            .iter()
                            .filter(|id| ours.binary_search(id).is_ok())
                            .copied(),
                    );
                    match role {
                        Role::Initiator => {
                            diff(ours, &theirs, &mut outcome.have, &mut outcome.need);
                            push_skip(&mut out, upper);
                        }
                        Role::Responder => {
                            if ours == theirs.as_slice() {
                                push_skip(&mut out, upper);
                            } else {
                                out.push(v1::ReconcileRange {
                                    upper_bound: upper.to_vec(),
                                    payload: Some(Payload::IdList(ours.concat())),
                                });
                            }
                        }
                    }
                }
            }
            lower = upper.to_vec();
            start = end;
        }
        if message.ranges.is_empty() {
            return Err(ReconcileError::BadRanges);
        }
        // A peer may repeat IDs in its lists; `peer_holds` searches these.
        outcome.common.sort_unstable();
        outcome.common.dedup();
        let done = out
            .iter()
            .all(|r| matches!(r.payload, Some(Payload::Skip(_))));
        if !done {
            let ids: usize = out
                .iter()
                .map(|r| match &r.payload {
                    Some(Payload::IdList(l)) => l.len() / CONTENT_ID_LEN,
                    _ => 0,
                })
                .sum();
            if out.len() > MAX_RECONCILE_RANGES || ids > MAX_IDS_PER_FRAME {
                return Err(ReconcileError::TooLarge);
            }
            outcome.reply = Some(v1::Reconcile { ranges: out });
        }
        Ok(outcome)
    }
}

/// The responder's answer when a round ends on its side (everything
/// matched): one skip over the whole range. The initiator processes it as
/// "done" and completes its round, so both sides know the round is over.
pub fn finished() -> v1::Reconcile {
    v1::Reconcile {
        ranges: vec![v1::ReconcileRange {
            upper_bound: Vec::new(),
            payload: Some(Payload::Skip(true)),
        }],
    }
}

/// Appends a skip, merging it with a preceding skip.
fn push_skip(out: &mut Vec<v1::ReconcileRange>, upper: &[u8]) {
    if let Some(prev) = out.last_mut()
        && matches!(prev.payload, Some(Payload::Skip(_)))
    {
        prev.upper_bound = upper.to_vec();
        return;
    }
    out.push(v1::ReconcileRange {
        upper_bound: upper.to_vec(),
        payload: Some(Payload::Skip(true)),
    });
}

/// Sorted-list difference: `have` = ours − theirs, `need` = theirs − ours.
fn diff(
    ours: &[ContentId],
    theirs: &[ContentId],
    have: &mut Vec<ContentId>,
    need: &mut Vec<ContentId>,
) {
    let mut theirs = theirs.to_vec();
    theirs.sort_unstable();
    theirs.dedup();
    let (mut i, mut j) = (0, 0);
    while let (Some(a), Some(b)) = (ours.get(i), theirs.get(j)) {
        match a.cmp(b) {
            std::cmp::Ordering::Less => {
                have.push(*a);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                need.push(*b);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    have.extend(ours.get(i..).unwrap_or_default());
    need.extend(theirs.get(j..).unwrap_or_default());
}
