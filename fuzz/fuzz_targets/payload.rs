#![no_main]
//! Fuzzes the decoders of what sits inside an envelope: `EnvelopeContent`
//! and `Payload` (whose contact request carries a card to verify).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_proto::decode::<ferry_proto::v1::EnvelopeContent>(data);
    if let Ok(payload) = ferry_proto::decode::<ferry_proto::v1::Payload>(data) {
        if let Some(ferry_proto::v1::payload::Kind::ContactRequest(req)) = payload.kind {
            if let Some(card) = req.card {
                let _ = ferry_core::contact::ContactCard::from_wire(&card);
            }
        }
    }
});
