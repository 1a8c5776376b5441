//! The checked-in header is what cbindgen makes from the sources now: a
//! change to the ABI without regenerating it fails here (and so in CI).
//! `FERRY_BLESS_HEADER=1 cargo test -p ferry-ffi --test header` rewrites it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

#[test]
fn the_checked_in_header_is_up_to_date() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("include/ferry.h");
    if std::env::var_os("FERRY_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let first = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "ffi/include/ferry.h is out of date (first difference at line {}): \
             run FERRY_BLESS_HEADER=1 cargo test -p ferry-ffi --test header and commit it",
            first + 1
        );
    }
}
