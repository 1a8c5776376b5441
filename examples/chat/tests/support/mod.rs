//! Driving real `ferry-chat` and `ferry-relay` processes: tmux panes a
//! test types into and reads, and the relay as its operator runs it.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub const CHAT: &str = env!("CARGO_BIN_EXE_ferry-chat");

/// The same passphrase for every test identity.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A program the test needs: with `CI=true` a missing one fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is required (CI=true): .ci/run installs it"
        );
        eprintln!("SKIPPED: {name} not found (set CI=true to make this a failure)");
    }
    found
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The relay binary from the current sources (`cargo test -p ferry-chat`
/// builds only this package's binary).
pub fn relay_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = target_dir();
            let root = target.parent().unwrap().to_path_buf();
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let mut command = Command::new(env!("CARGO"));
            command
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "ferry-relay",
                    "--bin",
                    "ferry-relay",
                ])
                .arg("--target-dir")
                .arg(&root)
                .current_dir(repo);
            if target.file_name().is_some_and(|p| p == "release") {
                command.arg("--release");
            }
            assert!(
                command.status().unwrap().success(),
                "cargo build -p ferry-relay failed"
            );
            let bin = target.join("ferry-relay");
            assert!(bin.is_file(), "{bin:?} missing after the build");
            bin
        })
        .clone()
}

/// A running relay daemon.
pub struct Relay {
    child: Child,
    /// Its address, ending in `/p2p/<peer id>`.
    pub address: String,
    /// The bridge line it printed, with obfs4 on.
    pub bridge: Option<String>,
}

impl Relay {
    /// Starts a relay on loopback with its store under `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(
            dir,
            "[listen]\ntcp = [\"/ip4/127.0.0.1/tcp/0\"]\nquic = []\n",
            None,
        )
    }

    /// Starts a relay with its store under `dir`, `config` after the
    /// `[storage]` section, inside network namespace `ns` if given.
    pub fn start_with(dir: &Path, config_text: &str, ns: Option<&str>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            format!("[storage]\npath = {:?}\n{config_text}", dir.join("store")),
        )
        .unwrap();
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(relay_binary());
                c
            }
            None => Command::new(relay_binary()),
        };
        let wants_bridge = config_text.contains("[obfs4]");
        let mut child = command
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::sync_channel(256);
        let stdout = child.stdout.take().unwrap();
        // Keeps reading after start-up: the relay prints on shutdown too.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.try_send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut peer, mut listening, mut bridge) = (None, None, None);
        let mut seen = Vec::new();
        while peer.is_none() || listening.is_none() || (wants_bridge && bridge.is_none()) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("the relay did not start; printed {seen:?}"));
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("relay printed {seen:?}"));
            if let Some(line) = line.strip_prefix("bridge line (paste into ferry-chat): ") {
                bridge = Some(line.trim().to_string());
            }
            if let Some(id) = line.strip_prefix("peer id ") {
                peer = Some(id.trim().to_string());
            }
            if let Some(addr) = line.strip_prefix("listening on ")
                && addr.contains("/tcp/")
            {
                listening = Some(addr.trim().to_string());
            }
            seen.push(line);
        }
        let (peer, listening) = (peer.unwrap(), listening.unwrap());
        let address = if listening.contains("/p2p/") {
            listening
        } else {
            format!("{listening}/p2p/{peer}")
        };
        Self {
            child,
            address,
            bridge,
        }
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(mut self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the relay exited with {status:?}");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private tmux server (its own socket), killed on drop.
pub struct Tmux {
    tmux: PathBuf,
    socket: String,
}

impl Tmux {
    /// A new server, or `None` when tmux is missing outside CI.
    pub fn new(name: &str) -> Option<Self> {
        let tmux = tool("tmux")?;
        Some(Self {
            tmux,
            socket: format!("ferry-{name}-{}", std::process::id()),
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.tmux);
        c.arg("-L").arg(&self.socket).arg("-f").arg("/dev/null");
        c
    }

    /// A 100×30 pane running a plain shell in `dir`.
    pub fn pane(&self, name: &str, dir: &Path) -> Pane<'_> {
        self.pane_in(name, dir, None)
    }

    /// A pane whose shell runs in network namespace `ns` (if any).
    pub fn pane_in(&self, name: &str, dir: &Path, ns: Option<&str>) -> Pane<'_> {
        let mut command = self.command();
        command
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "100",
                "-y",
                "30",
                "-c",
            ])
            .arg(dir);
        if let Some(ns) = ns {
            command.args(["ip", "netns", "exec", ns]);
        }
        let status = command
            .args(["env", "-i"])
            .arg(format!(
                "PATH={}",
                std::env::var("PATH").unwrap_or_default()
            ))
            .arg("TERM=xterm-256color")
            .arg("PS1=$ ")
            .arg(format!("HOME={}", dir.display()))
            .args(["bash", "--norc", "--noprofile"])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        Pane {
            tmux: self,
            name: name.to_string(),
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// A tmux pane: type into it, read its screen.
pub struct Pane<'a> {
    tmux: &'a Tmux,
    name: String,
}

impl Pane<'_> {
    /// Types `text` literally (no key names).
    pub fn type_text(&self, text: &str) {
        let ok = self
            .tmux
            .command()
            .args(["send-keys", "-t", &self.name, "-l", "--", text])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Pastes `text` as a terminal does (bracketed, when the program
    /// asked for it).
    pub fn paste(&self, text: &str) {
        let set = self
            .tmux
            .command()
            .args(["set-buffer", "-b", "ferry-test", "--", text])
            .status()
            .unwrap();
        assert!(set.success());
        let ok = self
            .tmux
            .command()
            .args([
                "paste-buffer",
                "-p",
                "-d",
                "-b",
                "ferry-test",
                "-t",
                &self.name,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Presses a key by tmux name (`Enter`, `Escape`, `C-c`).
    pub fn key(&self, key: &str) {
        let ok = self
            .tmux
            .command()
            .args(["send-keys", "-t", &self.name, key])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Types a line and presses Enter.
    pub fn line(&self, text: &str) {
        self.type_text(text);
        // A beat between the text and Enter, as a person types: a paste
        // ending in Enter can arrive as one read.
        std::thread::sleep(Duration::from_millis(50));
        self.key("Enter");
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        let out = self
            .tmux
            .command()
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A tmux format value for the pane (`#{alternate_on}`).
    pub fn format(&self, format: &str) -> String {
        let out = self
            .tmux
            .command()
            .args(["display-message", "-p", "-t", &self.name, format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until the screen satisfies `ready`; panics with the screen.
    pub fn wait(&self, what: &str, secs: u64, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{}: waited {secs} s for {what}; the screen shows:\n{screen}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// With `FERRY_CHAT_TRANSCRIPT=<file>`, appends the screen under a
    /// heading (how the transcript in docs/chat.md was made).
    pub fn record(&self, heading: &str) {
        if let Some(path) = std::env::var_os("FERRY_CHAT_TRANSCRIPT") {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            writeln!(file, "### {heading}\n\n```\n{}```\n", self.screen()).unwrap();
        }
    }

    /// Waits for `text` on the screen.
    pub fn wait_for(&self, text: &str, secs: u64) -> String {
        self.wait(&format!("{text:?}"), secs, |s| s.contains(text))
    }

    /// Waits for the shell prompt after a program exits, with the
    /// terminal back on the normal screen.
    pub fn wait_for_shell(&self, secs: u64) -> String {
        let screen = self.wait("the shell prompt", secs, |s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_end() == "$")
        });
        assert_eq!(
            self.format("#{alternate_on}"),
            "0",
            "still on the alternate screen"
        );
        screen
    }

    /// The terminal's settings as `stty -g` prints them (to compare
    /// before and after a program ran).
    pub fn stty(&self) -> String {
        self.line("clear; stty -g; echo END-STTY");
        let screen = self.wait_for("END-STTY\n", 10);
        let line = screen
            .lines()
            .take_while(|l| !l.starts_with("END-STTY"))
            .filter(|l| l.contains(':'))
            .last()
            .unwrap_or_default()
            .to_string();
        self.line("clear");
        self.wait_for_shell(10);
        line
    }
}

/// Starts the chat in `pane` with `args`, creating or unlocking its
/// identity, and waits for the chat screen.
pub fn start_chat(pane: &Pane<'_>, args: &str, first_run: bool) {
    pane.line("clear");
    pane.line(&format!("{CHAT} {args}"));
    if first_run {
        pane.wait_for("New passphrase:", 30);
        pane.line(PASSPHRASE);
        pane.wait_for("Again:", 10);
        pane.line(PASSPHRASE);
    } else {
        pane.wait_for("Passphrase for", 30);
        pane.line(PASSPHRASE);
    }
    pane.wait_for("ferry-chat ·", 90);
}

/// The lines between two marker lines on a screen, borders trimmed.
pub fn between(screen: &str, begin: &str, end: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in screen.lines() {
        let t = line.trim_matches(|c: char| c == '│' || c.is_whitespace());
        if t.contains(begin) {
            inside = true;
            continue;
        }
        if t.contains(end) {
            break;
        }
        if inside {
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

/// Every file under `dir` with its size and contents digest, to show
/// that something changed nothing.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// The PID of the process whose command line contains `needle`.
pub fn pid_of(needle: &str) -> u32 {
    for entry in std::fs::read_dir("/proc").unwrap() {
        let entry = entry.unwrap();
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && cmdline.contains("ferry-chat") && pid != std::process::id() {
            return pid;
        }
    }
    panic!("no process with {needle:?} in its command line");
}

/// Sends SIGTERM.
pub fn terminate(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM {pid} failed");
}
