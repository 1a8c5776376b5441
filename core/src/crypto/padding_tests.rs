//! Unit tests of the padding rules.
use super::*;

#[test]
fn padded_lengths_are_bucket_minus_overhead() {
    for len in [0, 1, 100, 467, 468, 469, 2000, 8000, MAX_CONTENT_LEN] {
        let padded = pad(&vec![7; len]).unwrap();
        assert!(
            SEALED_BODY_BUCKETS.contains(&(padded.len() + OVERHEAD)),
            "{len}"
        );
        assert_eq!(unpad(&padded).unwrap(), vec![7; len].as_slice());
    }
    assert!(pad(&vec![0; MAX_CONTENT_LEN + 1]).is_none());
}

#[test]
fn inconsistent_prefix_is_rejected() {
    assert!(unpad(&[0, 0, 0]).is_none());
    assert!(unpad(&[0, 0, 1, 0, 1, 2]).is_none());
    assert_eq!(unpad(&[0, 0, 0, 2, 1, 2, 0]).unwrap(), &[1, 2]);
}
