//! What the engine puts into a sneakernet bundle and takes out of one
//! (the format is [`crate::bundle`]; the node reads and writes files).

use std::collections::HashSet;

use super::{
    Custody, Engine, EngineError, Output, PeerId, PeerState, SourceId, Store, Verdict, store_err,
};
use crate::{
    crypto::tags,
    keys::IdentityKey,
    proto::{self, v1},
};
use rand_core::CryptoRng;

/// Which envelopes go into a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFilter {
    /// Every live envelope held: our own, contacts' and strangers'
    /// (a carrier's bundle; strangers' envelopes cannot be told apart by
    /// recipient, by design).
    All,
    /// Only our own unacknowledged messages to these contacts (a bundle
    /// handed to someone who will meet them).
    To(Vec<IdentityKey>),
}

/// What an import did, envelope by envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Envelopes in the bundle.
    pub total: u64,
    /// Taken into custody, to carry on.
    pub imported: u64,
    /// Addressed to us: opened and handed to the app (or a receipt for
    /// one of our messages).
    pub for_us: u64,
    /// Already held, seen or delivered.
    pub duplicate: u64,
    /// Past their expiry.
    pub expired: u64,
    /// Malformed, or with a wrong content ID or impossible lifetime.
    pub invalid: u64,
    /// Refused by a custody quota.
    pub over_quota: u64,
    /// Not carried for another reason: out of hops, a lifetime longer
    /// than we carry, or addressed to us but unreadable.
    pub declined: u64,
}

impl ImportSummary {
    /// The sum of two summaries (an import done in parts).
    #[must_use]
    pub fn add(&self, other: &Self) -> Self {
        Self {
            total: self.total + other.total,
            imported: self.imported + other.imported,
            for_us: self.for_us + other.for_us,
            duplicate: self.duplicate + other.duplicate,
            expired: self.expired + other.expired,
            invalid: self.invalid + other.invalid,
            over_quota: self.over_quota + other.over_quota,
            declined: self.declined + other.declined,
        }
    }
}

/// The pseudo-peer a bundle's envelopes are charged to while it is
/// imported (drivers number real peers from 0 upwards).
const BUNDLE_PEER: PeerId = PeerId(u64::MAX);

impl<S: Store, R: CryptoRng> Engine<S, R> {
    /// The live envelopes `filter` selects, encoded, at `now`.
    ///
    /// # Errors
    /// If the store cannot be read.
    pub fn export_envelopes(
        &self,
        filter: &ExportFilter,
        now: u64,
    ) -> Result<Vec<Vec<u8>>, EngineError> {
        let wanted: Option<HashSet<[u8; 32]>> = match filter {
            ExportFilter::All => None,
            ExportFilter::To(contacts) => Some(contacts.iter().map(|c| c.to_bytes()).collect()),
        };
        let mut out = Vec::new();
        for id in &self.held_sorted {
            let Some(held) = self.held.get(id) else {
                continue;
            };
            if held.expiry <= now {
                continue;
            }
            if let Some(wanted) = &wanted {
                let ours_to_them = held.custody == Custody::Own
                    && self
                        .outbox
                        .get(id)
                        .is_some_and(|record| wanted.contains(&record.to));
                if !ours_to_them {
                    continue;
                }
            }
            if let Some(bytes) = self.store.envelope(id).map_err(store_err)? {
                out.push(bytes);
            }
        }
        Ok(out)
    }

    /// Takes a verified bundle's envelopes as if a stranger had sent them
    /// by sync (every check of [`super::Input::Frame`] applies, charged
    /// to quota account `source`), in one durable commit. Envelopes for
    /// us are delivered; new ones are published on the overlay.
    ///
    /// # Errors
    /// If the store fails; then nothing was committed.
    pub fn import_envelopes(
        &mut self,
        envelopes: &[&[u8]],
        source: SourceId,
        now: u64,
    ) -> Result<ImportSummary, EngineError> {
        let mut summary = ImportSummary {
            total: envelopes.len() as u64,
            ..ImportSummary::default()
        };
        let replaced = self.peers.insert(
            BUNDLE_PEER,
            PeerState {
                source,
                ..PeerState::default()
            },
        );
        let result = self.import_inner(envelopes, now, &mut summary);
        self.peers.remove(&BUNDLE_PEER);
        if let Some(previous) = replaced {
            self.peers.insert(BUNDLE_PEER, previous);
        }
        result.map(|()| summary)
    }

    fn import_inner(
        &mut self,
        envelopes: &[&[u8]],
        now: u64,
        summary: &mut ImportSummary,
    ) -> Result<(), EngineError> {
        let mut all_ops = Vec::new();
        let mut all_after = Vec::new();
        for bytes in envelopes {
            // Expiry first, so an expired envelope is not counted as
            // anything else (ingest ignores it silently).
            let decoded = proto::decode::<v1::Envelope>(bytes);
            if let Ok(envelope) = &decoded
                && envelope.expiry <= now
                && tags::content_id_of(envelope).as_slice() == envelope.content_id.as_slice()
            {
                summary.expired += 1;
                continue;
            }
            let before = self.counters;
            let (verdict, ops, after) = self.ingest(bytes, Some(BUNDLE_PEER), false, false, now)?;
            let after_counters = self.counters;
            let delivered_outputs = after.iter().any(|o| {
                matches!(
                    o,
                    Output::Deliver(_)
                        | Output::Event(
                            super::Event::Delivered { .. } | super::Event::ContactRequest { .. }
                        )
                )
            });
            if after_counters.invalid > before.invalid {
                summary.invalid += 1;
            } else if after_counters.duplicates > before.duplicates {
                summary.duplicate += 1;
            } else if after_counters.rejected_quota > before.rejected_quota {
                summary.over_quota += 1;
            } else if after_counters.stored > before.stored {
                summary.imported += 1;
            } else if delivered_outputs || after_counters.delivered > before.delivered {
                summary.for_us += 1;
            } else {
                summary.declined += 1;
            }
            if verdict == Verdict::Accept {
                all_after.push(Output::Publish {
                    content_id: decoded
                        .as_ref()
                        .map(tags::content_id_of)
                        .unwrap_or_default(),
                    bytes: bytes.to_vec(),
                });
            }
            all_ops.extend(ops);
            all_after.extend(after);
        }
        self.finish(all_ops, all_after)
    }
}
