#![no_main]
//! Fuzzes the `BundleHeader` decoder: size check, protobuf parse, structural rules.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = ferry_proto::decode::<ferry_proto::v1::BundleHeader>(data) {
        // Whatever decodes must re-encode to something that decodes equal.
        let again = ferry_proto::encode(&value);
        assert_eq!(
            ferry_proto::decode::<ferry_proto::v1::BundleHeader>(&again).ok(),
            Some(value)
        );
    }
});
