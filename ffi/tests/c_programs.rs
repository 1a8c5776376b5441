//! The C side, really compiled and run: the harness (every exported
//! function, used and misused) and the example chat program (two
//! processes over loopback), each built with `cc -Wall -Wextra -Werror`
//! against `include/ferry.h` and the static library, and run plainly,
//! under valgrind (`--leak-check=full --error-exitcode=1`) and under
//! AddressSanitizer. A canary that leaks on purpose shows both tools do
//! catch a leak here.
//!
//! Needs `cc` and `valgrind`; `.ci/run` installs them. Missing tools fail
//! the test when `CI=true` and skip it (with a message) otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, mpsc},
    time::{Duration, Instant},
};

/// One C program at a time: valgrind runs are CPU-heavy and the machine
/// has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const LIBS: [&str; 7] = [
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/<profile>`, where cargo put `libferry.a` before this test.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The tool's path, or `None` (skip) outside CI; in CI a missing tool
/// fails.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is required (CI=true): .ci/run installs it");
        }
        eprintln!("SKIPPED: {name} not found (set CI=true to make this a failure)");
    }
    found
}

/// Builds the static library from the current sources (once per run):
/// `cargo test` builds only the rlib, and a stale `libferry.a` would test
/// yesterday's code.
fn static_library() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = target_dir();
            let root = target.parent().unwrap().to_path_buf();
            let mut command = Command::new(env!("CARGO"));
            command
                .args(["build", "--quiet", "-p", "ferry-ffi", "--lib"])
                .arg("--target-dir")
                .arg(&root)
                .current_dir(repo());
            if target.file_name().is_some_and(|p| p == "release") {
                command.arg("--release");
            }
            let status = command.status().expect("run cargo build");
            assert!(status.success(), "cargo build -p ferry-ffi failed");
            let lib = target.join("libferry.a");
            assert!(lib.is_file(), "{lib:?} missing after the build");
            lib
        })
        .clone()
}

fn compile(source: &str, out: &Path, asan: bool) -> bool {
    let Some(cc) = tool("cc") else {
        return false;
    };
    let lib = static_library();
    let mut command = Command::new(cc);
    command.args([
        "-Wall",
        "-Wextra",
        "-Werror",
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
    ]);
    if asan {
        command.args(["-fsanitize=address", "-fno-omit-frame-pointer", "-g"]);
    }
    command
        .arg("-I")
        .arg(repo().join("ffi/include"))
        .arg(repo().join(source))
        .arg(&lib)
        .args(LIBS)
        .arg("-o")
        .arg(out);
    let output = command.output().expect("run cc");
    assert!(
        output.status.success(),
        "cc {source} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

fn valgrind_args() -> Vec<String> {
    vec![
        "--leak-check=full".into(),
        "--error-exitcode=1".into(),
        "--errors-for-leak-kinds=definite,possible".into(),
        format!(
            "--suppressions={}",
            repo().join("ffi/c/valgrind.supp").display()
        ),
    ]
}

/// Runs `program args…`, optionally under valgrind; returns (success,
/// combined output).
fn run(program: &Path, args: &[&Path], valgrind: bool) -> (bool, String) {
    let mut command = if valgrind {
        let mut c = Command::new(tool("valgrind").unwrap());
        c.args(valgrind_args()).arg(program);
        c
    } else {
        Command::new(program)
    };
    command.args(args).env("ASAN_OPTIONS", "detect_leaks=1");
    let output = command.output().expect("run the program");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn harness(asan: bool, valgrind: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if valgrind && tool("valgrind").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("harness");
    if !compile("ffi/c/harness.c", &exe, asan) {
        return;
    }
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let (ok, output) = run(&exe, &[&scratch], valgrind);
    assert!(ok, "the harness failed:\n{output}");
    assert!(output.contains("harness: all checks passed"), "{output}");
    if valgrind {
        assert!(output.contains("ERROR SUMMARY: 0 errors"), "{output}");
        assert!(
            output.contains("definitely lost: 0 bytes") || output.contains("no leaks are possible"),
            "{output}"
        );
    }
}

#[test]
fn the_harness_passes() {
    harness(false, false);
}

#[test]
fn the_harness_is_clean_under_valgrind() {
    harness(false, true);
}

#[test]
fn the_harness_is_clean_under_address_sanitizer() {
    harness(true, false);
}

/// Both tools report a leak of one handle in this very setup (same flags,
/// same suppressions): their silence on the harness is not blindness.
#[test]
fn valgrind_and_address_sanitizer_catch_a_leaked_handle() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("canary");
    let asan = dir.path().join("canary-asan");
    if !compile("ffi/c/canary_leak.c", &plain, false)
        || !compile("ffi/c/canary_leak.c", &asan, true)
    {
        return;
    }
    if tool("valgrind").is_some() {
        let (ok, output) = run(&plain, &[], true);
        assert!(!ok, "valgrind missed the leak:\n{output}");
        assert!(output.contains("definitely lost"), "{output}");
    }
    let (ok, output) = run(&asan, &[], false);
    assert!(!ok, "AddressSanitizer missed the leak:\n{output}");
    assert!(output.contains("LeakSanitizer"), "{output}");
}

/// One running `ferry_chat`, driven through its stdin and stdout.
struct Chat {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Chat {
    fn start(exe: &Path, dir: &Path, valgrind: bool) -> Self {
        let mut command = if valgrind {
            let mut c = Command::new(tool("valgrind").unwrap());
            c.args(valgrind_args()).arg("--log-fd=2").arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let mut child = command
            .arg(dir)
            .arg("a passphrase")
            .arg("--fast")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::sync_channel(4096);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn say(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The first line starting with `prefix` (waiting up to `secs`).
    fn expect(&mut self, prefix: &str, secs: u64) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    assert!(!line.starts_with("ERROR"), "the program said: {line}");
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line starting with {prefix:?}; saw {:?}", self.seen);
    }

    fn quit(mut self) -> String {
        self.say("quit");
        let output = self.child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "exit {:?}:\n{stderr}",
            output.status
        );
        stderr
    }
}

fn chat(valgrind: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if valgrind && tool("valgrind").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("ferry_chat");
    if !compile("examples/c/ferry_chat.c", &exe, false) {
        return;
    }
    let slow = if valgrind { 6 } else { 1 };
    let mut alice = Chat::start(&exe, &dir.path().join("alice"), valgrind);
    let mut bob = Chat::start(&exe, &dir.path().join("bob"), valgrind);
    alice.say("code");
    bob.say("code");
    bob.say("addr");
    let code_a = alice.expect("CODE ", 30 * slow)["CODE ".len()..].to_owned();
    let code_b = bob.expect("CODE ", 30 * slow)["CODE ".len()..].to_owned();
    let addr_b = bob.expect("ADDR ", 30 * slow)["ADDR ".len()..].to_owned();
    alice.say(&format!("add {code_b}"));
    bob.say(&format!("add {code_a}"));
    alice.expect("ADDED ", 30 * slow);
    bob.expect("ADDED ", 30 * slow);
    alice.say(&format!("dial {addr_b}"));
    alice.expect("CONNECTED ", 30 * slow);
    alice.say("send hello from a C program");
    let id = alice.expect("QUEUED ", 30 * slow)["QUEUED ".len()..].to_owned();
    bob.expect("MSG hello from a C program", 60 * slow);
    alice.expect(&format!("STATUS {id} delivered"), 60 * slow);
    bob.say("history");
    bob.expect("HISTORY < hello from a C program", 30 * slow);
    let logs = [alice.quit(), bob.quit()];
    if valgrind {
        for log in logs {
            assert!(log.contains("ERROR SUMMARY: 0 errors"), "{log}");
        }
    }
}

#[test]
fn the_c_chat_example_talks_between_two_processes() {
    chat(false);
}

#[test]
fn the_c_chat_example_is_clean_under_valgrind() {
    chat(true);
}
