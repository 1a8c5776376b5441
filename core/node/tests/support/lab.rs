//! Network namespaces for tests: hosts, routers and NATs on one machine,
//! each node a child process running inside its namespace.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Runs `ip` and says whether it worked.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {}", args.join(" "));
}

/// Namespaces deleted when the lab goes, however the test ends.
pub struct Lab {
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    /// A directory the parent and its children share.
    pub dir: tempfile::TempDir,
}

/// The env variable that names a child's role.
pub const ROLE: &str = "FERRY_LAB_ROLE";
/// The env variable that names the shared directory.
pub const DIR: &str = "FERRY_LAB_DIR";

impl Lab {
    /// A lab, or `None` where namespaces cannot be made (not root, no
    /// iproute2): then the test is skipped, except under `CI=true` where
    /// it fails.
    pub fn new() -> Option<Self> {
        // Tests of one binary run in parallel: one probe name each.
        static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = format!("ferry-probe-{}-{n}", std::process::id());
        if !ip(&["netns", "add", &probe]) {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: this test needs root and `ip` (iproute2)"
            );
            eprintln!("skipped: network namespaces need root and `ip`");
            return None;
        }
        ip(&["netns", "del", &probe]);
        Some(Self {
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    /// A namespace with loopback up; returns its full name.
    pub fn namespace(&mut self, short: &str) -> String {
        let name = format!("fy{short}{}", std::process::id());
        must("ip", &["netns", "add", &name]);
        self.namespaces.push(name.clone());
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth pair from `a` (interface `ia`, address `addr_a`) to `b`.
    pub fn wire(&self, a: &str, ia: &str, addr_a: &str, b: &str, ib: &str, addr_b: &str) {
        must(
            "ip",
            &[
                "link", "add", ia, "netns", a, "type", "veth", "peer", "name", ib, "netns", b,
            ],
        );
        for (ns, iface, addr) in [(a, ia, addr_a), (b, ib, addr_b)] {
            must("ip", &["-n", ns, "addr", "add", addr, "dev", iface]);
            must("ip", &["-n", ns, "link", "set", iface, "multicast", "on"]);
            must("ip", &["-n", ns, "link", "set", iface, "up"]);
        }
    }

    /// Runs a command inside `ns`.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) {
        let mut full = vec!["netns", "exec", ns, program];
        full.extend_from_slice(args);
        must("ip", &full);
    }

    /// Makes `ns` a router (forwarding on).
    pub fn router(&self, ns: &str) {
        self.exec(ns, "sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
    }

    /// Makes `ns` a NAT that masquerades what leaves through `outside`.
    pub fn nat(&self, ns: &str, outside: &str) {
        self.router(ns);
        self.exec(
            ns,
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                outside,
                "-j",
                "MASQUERADE",
            ],
        );
    }

    /// Runs test `test` of this binary as `role` inside `ns`.
    pub fn spawn(&mut self, ns: &str, test: &str, role: &str) {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(DIR, self.dir.path())
            .spawn()
            .unwrap();
        self.children.push((role.to_owned(), child));
    }

    /// Waits for `role` to finish and asserts it succeeded.
    pub fn wait(&mut self, role: &str, limit: Duration) {
        let index = self
            .children
            .iter()
            .position(|(r, _)| r == role)
            .expect("no such child");
        let (_, mut child) = self.children.remove(index);
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{role} failed ({status})");
                return;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{role} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            ip(&["netns", "del", ns]);
        }
    }
}

/// In a child: the shared directory.
pub fn shared_dir() -> PathBuf {
    PathBuf::from(std::env::var(DIR).unwrap())
}

/// Writes `name` in the shared directory (atomically).
pub fn put(name: &str, value: &str) {
    let dir = shared_dir();
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, value).unwrap();
    std::fs::rename(temp, dir.join(name)).unwrap();
}

/// Waits up to `secs` for `name` in the shared directory.
pub async fn get(name: &str, secs: u64) -> String {
    let path = shared_dir().join(name);
    for _ in 0..secs * 10 {
        if let Ok(value) = std::fs::read_to_string(&path) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never appeared", path.display());
}

/// Whether `path` exists in the shared directory.
pub fn exists(name: &str) -> bool {
    Path::new(&shared_dir()).join(name).exists()
}
