//! Regenerates `proto/src/generated/` from `proto/schema/` with prost-build,
//! using protox (a pure-Rust protobuf compiler) instead of a system `protoc`.
//!
//! ```text
//! cargo run -p ferry-proto-codegen            # rewrite the checked-in code
//! cargo run -p ferry-proto-codegen -- --check # fail if it is stale (CI)
//! ```

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};

const FILES: &[&str] = &[
    "ferry/v1/envelope.proto",
    "ferry/v1/contact.proto",
    "ferry/v1/payload.proto",
    "ferry/v1/sync.proto",
    "ferry/v1/bundle.proto",
];

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Generates the Rust code into `out_dir`.
fn generate(out_dir: &Path) -> Result<()> {
    let schema = proto_dir().join("schema");
    let fds = protox::compile(FILES, [&schema]).context("compiling .proto files")?;
    fs::create_dir_all(out_dir)?;
    prost_build::Config::new()
        .out_dir(out_dir)
        // `bytes` fields stay `Vec<u8>`: decoded values are validated and
        // copied into fixed-size arrays by the typed layer anyway.
        .compile_fds(fds)
        .context("generating Rust code")?;
    Ok(())
}

fn run() -> Result<()> {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => bail!("unknown argument {other:?}; usage: ferry-proto-codegen [--check]"),
    };
    let target = proto_dir().join("src").join("generated");
    if !check {
        generate(&target)?;
        println!("regenerated {}", target.display());
        return Ok(());
    }
    let scratch = std::env::temp_dir().join(format!("ferry-proto-check-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    generate(&scratch)?;
    let mut stale = Vec::new();
    for entry in fs::read_dir(&scratch)? {
        let entry = entry?;
        let fresh = fs::read(entry.path())?;
        let checked_in = fs::read(target.join(entry.file_name())).unwrap_or_default();
        if fresh != checked_in {
            stale.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    if !stale.is_empty() {
        bail!(
            "checked-in generated code is stale: {}; run `cargo run -p ferry-proto-codegen`",
            stale.join(", ")
        );
    }
    println!("generated protobuf code is up to date");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
