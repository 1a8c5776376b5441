#![no_main]
//! Fuzzes the `SyncFrame` decoder: size check, protobuf parse, structural rules.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = ferry_proto::decode::<ferry_proto::v1::SyncFrame>(data) {
        // Whatever decodes must re-encode to something that decodes equal.
        let again = ferry_proto::encode(&value);
        assert_eq!(
            ferry_proto::decode::<ferry_proto::v1::SyncFrame>(&again).ok(),
            Some(value)
        );
    }
});
