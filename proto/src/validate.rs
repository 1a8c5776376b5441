//! Structural rules for every wire message (see [`crate::WireMessage`]).

use crate::{
    DecodeError, WireMessage,
    limits::*,
    v1::{
        BundleHeader, ContactCard, ContactRequest, DeliveredIds, DeliveryReceipt, Envelope,
        EnvelopeBatch, EnvelopeContent, Fingerprint, OlmMessage, Payload, PrekeyTopUp, Reconcile,
        ReconcileRange, SyncFrame, TextMessage, WantEnvelopes, envelope_content, payload,
        reconcile_range, sync_frame,
    },
};

fn version(what: &'static str, version: u32) -> Result<(), DecodeError> {
    if version == WIRE_VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion { what, version })
    }
}

fn exact_len(field: &'static str, bytes: &[u8], len: usize) -> Result<(), DecodeError> {
    if bytes.len() == len {
        Ok(())
    } else {
        Err(DecodeError::invalid(field, "wrong length"))
    }
}

fn max_len(field: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len <= max {
        Ok(())
    } else {
        Err(DecodeError::invalid(field, "too long"))
    }
}

/// Concatenated fixed-size IDs: a multiple of `CONTENT_ID_LEN`, bounded count.
fn id_concat(field: &'static str, ids: &[u8]) -> Result<(), DecodeError> {
    if !ids.len().is_multiple_of(CONTENT_ID_LEN) {
        return Err(DecodeError::invalid(field, "not a whole number of IDs"));
    }
    max_len(field, ids.len() / CONTENT_ID_LEN, MAX_IDS_PER_FRAME)
}

fn keys(field: &'static str, keys: &[Vec<u8>]) -> Result<(), DecodeError> {
    max_len(field, keys.len(), MAX_ONE_TIME_KEYS)?;
    keys.iter()
        .try_for_each(|k| exact_len(field, k, PUBLIC_KEY_LEN))
}

impl WireMessage for Envelope {
    const MAX_ENCODED_LEN: usize = MAX_ENVELOPE_LEN;

    fn validate(&self) -> Result<(), DecodeError> {
        version("Envelope", self.version)?;
        exact_len("Envelope.content_id", &self.content_id, CONTENT_ID_LEN)?;
        exact_len(
            "Envelope.recipient_tag",
            &self.recipient_tag,
            RECIPIENT_TAG_LEN,
        )?;
        max_len("Envelope.stamp", self.stamp.len(), MAX_STAMP_LEN)?;
        exact_len(
            "Envelope.delivery_commitment",
            &self.delivery_commitment,
            DELIVERY_COMMITMENT_LEN,
        )?;
        if !SEALED_BODY_BUCKETS.contains(&self.sealed_body.len()) {
            return Err(DecodeError::invalid(
                "Envelope.sealed_body",
                "length is not a bucket",
            ));
        }
        Ok(())
    }
}

impl WireMessage for ContactCard {
    const MAX_ENCODED_LEN: usize = MAX_CARD_LEN;

    fn validate(&self) -> Result<(), DecodeError> {
        version("ContactCard", self.version)?;
        exact_len(
            "ContactCard.identity_key",
            &self.identity_key,
            PUBLIC_KEY_LEN,
        )?;
        exact_len(
            "ContactCard.olm_identity_key",
            &self.olm_identity_key,
            PUBLIC_KEY_LEN,
        )?;
        exact_len("ContactCard.request_key", &self.request_key, PUBLIC_KEY_LEN)?;
        exact_len(
            "ContactCard.fallback_key",
            &self.fallback_key,
            PUBLIC_KEY_LEN,
        )?;
        keys("ContactCard.one_time_keys", &self.one_time_keys)?;
        max_len(
            "ContactCard.display_name",
            self.display_name.len(),
            MAX_DISPLAY_NAME_LEN,
        )?;
        exact_len("ContactCard.signature", &self.signature, SIGNATURE_LEN)
    }
}

impl WireMessage for EnvelopeContent {
    const MAX_ENCODED_LEN: usize = MAX_PAYLOAD_LEN;

    fn validate(&self) -> Result<(), DecodeError> {
        match &self.body {
            Some(envelope_content::Body::Olm(OlmMessage {
                message_type,
                ciphertext,
            })) => {
                if *message_type > 1 {
                    return Err(DecodeError::invalid(
                        "OlmMessage.message_type",
                        "unknown type",
                    ));
                }
                if ciphertext.is_empty() {
                    return Err(DecodeError::invalid("OlmMessage.ciphertext", "empty"));
                }
                Ok(())
            }
            Some(envelope_content::Body::ContactRequest(noise)) => {
                if noise.is_empty() {
                    return Err(DecodeError::invalid(
                        "EnvelopeContent.contact_request",
                        "empty",
                    ));
                }
                Ok(())
            }
            None => Err(DecodeError::invalid("EnvelopeContent.body", "missing")),
        }
    }
}

impl WireMessage for Payload {
    const MAX_ENCODED_LEN: usize = MAX_PAYLOAD_LEN;

    fn validate(&self) -> Result<(), DecodeError> {
        match &self.kind {
            Some(payload::Kind::Text(TextMessage {
                message_id,
                delivery_secret,
                ..
            })) => {
                exact_len("TextMessage.message_id", message_id, MESSAGE_ID_LEN)?;
                if !delivery_secret.is_empty() {
                    exact_len(
                        "TextMessage.delivery_secret",
                        delivery_secret,
                        DELIVERY_COMMITMENT_LEN,
                    )?;
                }
                Ok(())
            }
            Some(payload::Kind::Receipt(DeliveryReceipt {
                message_ids,
                content_ids,
                delivery_secrets,
                receipt_secret,
            })) => {
                if !receipt_secret.is_empty() {
                    exact_len(
                        "DeliveryReceipt.receipt_secret",
                        receipt_secret,
                        DELIVERY_COMMITMENT_LEN,
                    )?;
                }
                max_len(
                    "DeliveryReceipt.message_ids",
                    message_ids.len(),
                    MAX_RECEIPT_IDS,
                )?;
                max_len(
                    "DeliveryReceipt.content_ids",
                    content_ids.len(),
                    MAX_RECEIPT_IDS,
                )?;
                if delivery_secrets.len() != content_ids.len() {
                    return Err(DecodeError::invalid(
                        "DeliveryReceipt.delivery_secrets",
                        "one per content ID",
                    ));
                }
                message_ids.iter().try_for_each(|id| {
                    exact_len("DeliveryReceipt.message_ids", id, MESSAGE_ID_LEN)
                })?;
                content_ids.iter().try_for_each(|id| {
                    exact_len("DeliveryReceipt.content_ids", id, CONTENT_ID_LEN)
                })?;
                delivery_secrets.iter().try_for_each(|s| {
                    exact_len(
                        "DeliveryReceipt.delivery_secrets",
                        s,
                        DELIVERY_COMMITMENT_LEN,
                    )
                })
            }
            Some(payload::Kind::ContactRequest(ContactRequest { card, introduction })) => {
                card.as_ref()
                    .ok_or(DecodeError::invalid("ContactRequest.card", "missing"))?
                    .validate()?;
                max_len(
                    "ContactRequest.introduction",
                    introduction.len(),
                    MAX_INTRODUCTION_LEN,
                )
            }
            Some(payload::Kind::PrekeyTopUp(PrekeyTopUp {
                one_time_keys,
                fallback_key,
            })) => {
                keys("PrekeyTopUp.one_time_keys", one_time_keys)?;
                if !fallback_key.is_empty() {
                    exact_len("PrekeyTopUp.fallback_key", fallback_key, PUBLIC_KEY_LEN)?;
                }
                Ok(())
            }
            None => Err(DecodeError::invalid("Payload.kind", "missing")),
        }
    }
}

fn validate_range(range: &ReconcileRange) -> Result<(), DecodeError> {
    max_len(
        "ReconcileRange.upper_bound",
        range.upper_bound.len(),
        CONTENT_ID_LEN,
    )?;
    match &range.payload {
        Some(reconcile_range::Payload::Skip(_)) => Ok(()),
        Some(reconcile_range::Payload::Fingerprint(Fingerprint { digest, .. })) => {
            exact_len("Fingerprint.digest", digest, FINGERPRINT_LEN)
        }
        Some(reconcile_range::Payload::IdList(ids)) => id_concat("ReconcileRange.id_list", ids),
        None => Err(DecodeError::invalid("ReconcileRange.payload", "missing")),
    }
}

impl WireMessage for SyncFrame {
    const MAX_ENCODED_LEN: usize = MAX_SYNC_FRAME_LEN;

    fn validate(&self) -> Result<(), DecodeError> {
        version("SyncFrame", self.version)?;
        match &self.kind {
            Some(sync_frame::Kind::Reconcile(Reconcile { ranges })) => {
                max_len("Reconcile.ranges", ranges.len(), MAX_RECONCILE_RANGES)?;
                ranges.iter().try_for_each(validate_range)
            }
            Some(sync_frame::Kind::Want(WantEnvelopes { ids })) => {
                id_concat("WantEnvelopes.ids", ids)
            }
            Some(sync_frame::Kind::Envelopes(EnvelopeBatch { envelopes })) => {
                max_len(
                    "EnvelopeBatch.envelopes",
                    envelopes.len(),
                    MAX_ENVELOPES_PER_BATCH,
                )?;
                envelopes.iter().try_for_each(WireMessage::validate)
            }
            Some(sync_frame::Kind::Delivered(DeliveredIds { proofs })) => {
                max_len("DeliveredIds.proofs", proofs.len(), MAX_IDS_PER_FRAME)?;
                proofs.iter().try_for_each(|p| {
                    exact_len("DeliveryProof.content_id", &p.content_id, CONTENT_ID_LEN)?;
                    exact_len("DeliveryProof.secret", &p.secret, DELIVERY_COMMITMENT_LEN)
                })
            }
            None => Err(DecodeError::invalid("SyncFrame.kind", "missing")),
        }
    }
}

impl WireMessage for BundleHeader {
    const MAX_ENCODED_LEN: usize = MAX_BUNDLE_HEADER_LEN;

    fn validate(&self) -> Result<(), DecodeError> {
        version("BundleHeader", self.version)?;
        exact_len(
            "BundleHeader.body_digest",
            &self.body_digest,
            CONTENT_ID_LEN,
        )?;
        exact_len("BundleHeader.signer_key", &self.signer_key, PUBLIC_KEY_LEN)?;
        exact_len("BundleHeader.signature", &self.signature, SIGNATURE_LEN)
    }
}
