//! Running a pluggable transport as a managed proxy (pt-spec v1): the
//! child's environment, its stdout protocol, and a supervisor that
//! restarts it with backoff and kills it when the node goes.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::{mpsc, oneshot, watch},
};

use super::{PtError, PtEvent};

/// How long a PT may take to report its methods.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Restart backoff: doubles from the first to the last, and starts over
/// once the PT has stayed up for [`STABLE_UPTIME`].
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_LAST: Duration = Duration::from_secs(60);
const STABLE_UPTIME: Duration = Duration::from_secs(60);
/// Longest stdout line we read from the PT.
const MAX_LINE: usize = 4096;

/// Which side of the spec the PT runs.
#[derive(Debug, Clone)]
pub(crate) enum Side {
    /// Client: SOCKS proxies for these methods.
    Client,
    /// Server: listens on `bind` for the method and forwards to our
    /// Extended ORPort, authenticating with the cookie in `cookie_file`.
    Server {
        bind: SocketAddr,
        ext_or_port: SocketAddr,
        cookie_file: PathBuf,
        options: Vec<(String, String)>,
    },
}

/// What the PT must run.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) binary: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) method: String,
    pub(crate) side: Side,
}

/// One method the PT reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// The method name (`obfs4`).
    pub name: String,
    /// Client: the SOCKS5 proxy. Server: where it listens.
    pub address: SocketAddr,
    /// Server only: the arguments clients need (`cert`, `iat-mode`).
    pub args: Vec<(String, String)>,
}

/// Checks that `binary` is an executable file, so a typo is a
/// configuration error rather than a failure at the first dial.
///
/// # Errors
/// If it is missing or not executable.
pub fn check_binary(binary: &Path) -> Result<(), PtError> {
    let missing = || PtError::Binary(binary.display().to_string());
    let resolved = if binary.components().count() == 1 {
        // A bare name: look it up on PATH, as a shell would.
        std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(binary))
                    .find(|p| p.is_file())
            })
            .ok_or_else(missing)?
    } else {
        binary.to_path_buf()
    };
    let meta = std::fs::metadata(&resolved).map_err(|_| missing())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(missing());
        }
    }
    #[cfg(not(unix))]
    if !meta.is_file() {
        return Err(missing());
    }
    Ok(())
}

/// Creates `dir` (and its parents) readable by this user only: the PT
/// keeps its private keys there, and the node its Extended ORPort cookie.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn command(spec: &Spec) -> Command {
    let mut cmd = Command::new(&spec.binary);
    // Only what the spec defines, plus PATH: nothing of ours (proxies,
    // tokens) leaks into the child.
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("TOR_PT_MANAGED_TRANSPORT_VER", "1")
        .env("TOR_PT_STATE_LOCATION", &spec.state_dir)
        // With our stdin closed (we exited, even by kill -9) the PT exits.
        .env("TOR_PT_EXIT_ON_STDIN_CLOSE", "1");
    match &spec.side {
        Side::Client => {
            cmd.env("TOR_PT_CLIENT_TRANSPORTS", &spec.method);
        }
        Side::Server {
            bind,
            ext_or_port,
            cookie_file,
            options,
        } => {
            cmd.env("TOR_PT_SERVER_TRANSPORTS", &spec.method)
                .env("TOR_PT_SERVER_BINDADDR", format!("{}-{bind}", spec.method))
                // Only the Extended ORPort: it tells us each client's
                // address, which a plain ORPort would hide.
                .env("TOR_PT_ORPORT", "")
                .env("TOR_PT_EXTENDED_SERVER_PORT", ext_or_port.to_string())
                .env("TOR_PT_AUTH_COOKIE_FILE", cookie_file);
            if !options.is_empty() {
                let joined = options
                    .iter()
                    .map(|(k, v)| format!("{}:{k}={v}", spec.method))
                    .collect::<Vec<_>>()
                    .join(";");
                cmd.env("TOR_PT_SERVER_TRANSPORT_OPTIONS", joined);
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A running PT: the child, its stdin (held open), what it reported.
pub(crate) struct Running {
    child: Child,
    _stdin: Option<ChildStdin>,
    pub(crate) methods: Vec<Method>,
}

/// Starts the PT and reads its report.
pub(crate) async fn launch(spec: &Spec) -> Result<Running, PtError> {
    private_dir(&spec.state_dir).map_err(|e| PtError::Launch(format!("state directory: {e}")))?;
    let mut child = command(spec)
        .spawn()
        .map_err(|e| PtError::Launch(format!("{}: {e}", spec.binary.display())))?;
    let stdin = child.stdin.take();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| PtError::Launch("no stdout".into()))?;
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(drain_stderr(stderr));
    }
    let mut lines = BufReader::new(stdout);
    let report = tokio::time::timeout(LAUNCH_TIMEOUT, read_report(&mut lines, spec)).await;
    let methods = match report {
        Ok(Ok(methods)) => methods,
        Ok(Err(e)) => {
            let _ = child.kill().await;
            return Err(e);
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(PtError::Launch(format!(
                "no method reported within {} s",
                LAUNCH_TIMEOUT.as_secs()
            )));
        }
    };
    // Keep reading: a PT blocked on a full stdout pipe stops working.
    tokio::spawn(async move {
        while let Ok(Some(line)) = next_line(&mut lines).await {
            log_line(&line);
        }
    });
    Ok(Running {
        child,
        _stdin: stdin,
        methods,
    })
}

async fn drain_stderr(stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr);
    while let Ok(Some(line)) = next_line(&mut lines).await {
        tracing::debug!(target: "ferry::pt", line = %truncate(&line), "stderr");
    }
}

/// The next line of a PT's output, at most [`MAX_LINE`] bytes kept (the
/// rest of a longer line is skipped), decoded lossily: a PT that never
/// prints a newline, or prints bytes that are not UTF-8, costs bounded
/// memory and does not stop the reading (which would block the PT).
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(any.then(|| String::from_utf8_lossy(&line).into_owned()));
        }
        any = true;
        let newline = available.iter().position(|b| *b == b'\n');
        let chunk = available
            .get(..newline.unwrap_or(available.len()))
            .unwrap_or_default();
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
        let used = newline.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            let text = String::from_utf8_lossy(&line);
            return Ok(Some(text.trim_end_matches('\r').to_owned()));
        }
    }
}

fn truncate(line: &str) -> &str {
    match line.char_indices().nth(MAX_LINE) {
        Some((i, _)) => line.get(..i).unwrap_or(line),
        None => line,
    }
}

fn log_line(line: &str) {
    tracing::debug!(target: "ferry::pt", line = %truncate(line), "stdout");
}

async fn read_report<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut R,
    spec: &Spec,
) -> Result<Vec<Method>, PtError> {
    let mut methods = Vec::new();
    let client = matches!(spec.side, Side::Client);
    loop {
        let line = next_line(lines)
            .await
            .map_err(|e| PtError::Launch(e.to_string()))?
            .ok_or_else(|| PtError::Launch("the PT exited before reporting its methods".into()))?;
        match parse_line(&line)? {
            Line::Method(method) if method.name == spec.method => methods.push(method),
            Line::Done => break,
            Line::MethodError(name, message) if name == spec.method => {
                return Err(PtError::Method(message));
            }
            _ => log_line(&line),
        }
    }
    if methods.is_empty() {
        return Err(PtError::Method(format!(
            "the PT does not offer {} as a {}",
            spec.method,
            if client { "client" } else { "server" }
        )));
    }
    Ok(methods)
}

/// One stdout line of the PT protocol.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    Method(Method),
    MethodError(String, String),
    Done,
    Other,
}

/// Parses one stdout line.
pub(crate) fn parse_line(line: &str) -> Result<Line, PtError> {
    let mut words = line.split(' ');
    let keyword = words.next().unwrap_or_default();
    let rest: Vec<&str> = words.collect();
    match keyword {
        "VERSION-ERROR" => Err(PtError::Launch(
            "the PT does not speak managed-proxy version 1".into(),
        )),
        "ENV-ERROR" => Err(PtError::Launch(format!(
            "the PT rejected its environment: {}",
            rest.join(" ")
        ))),
        "PROXY-ERROR" => Err(PtError::Launch(rest.join(" "))),
        "CMETHODS" | "SMETHODS" if rest.first() == Some(&"DONE") => Ok(Line::Done),
        "CMETHOD-ERROR" | "SMETHOD-ERROR" => Ok(Line::MethodError(
            rest.first().copied().unwrap_or_default().to_owned(),
            rest.get(1..).map(|r| r.join(" ")).unwrap_or_default(),
        )),
        "CMETHOD" => match rest.as_slice() {
            [name, "socks5", address, ..] => Ok(Line::Method(Method {
                name: (*name).to_owned(),
                address: parse_addr(address)?,
                args: Vec::new(),
            })),
            [_, proto, ..] => Err(PtError::Launch(format!(
                "the PT offers a {proto} proxy; only socks5 is supported"
            ))),
            _ => Err(PtError::Launch(format!("malformed line {line:?}"))),
        },
        "SMETHOD" => match rest.as_slice() {
            [name, address, options @ ..] => {
                let args = options
                    .iter()
                    .find_map(|o| o.strip_prefix("ARGS:"))
                    .map(parse_server_args)
                    .transpose()?
                    .unwrap_or_default();
                Ok(Line::Method(Method {
                    name: (*name).to_owned(),
                    address: parse_addr(address)?,
                    args,
                }))
            }
            _ => Err(PtError::Launch(format!("malformed line {line:?}"))),
        },
        _ => Ok(Line::Other),
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, PtError> {
    text.parse()
        .map_err(|_| PtError::Launch(format!("the PT reported a bad address {text:?}")))
}

/// `k=v,k=v` with `\` escaping `,`, `=` and `\`.
fn parse_server_args(text: &str) -> Result<Vec<(String, String)>, PtError> {
    let mut args = Vec::new();
    let mut key = String::new();
    let mut value = String::new();
    let mut in_value = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => chars
                .next()
                .ok_or_else(|| PtError::Launch("dangling escape in ARGS".into()))?,
            ',' => {
                if !in_value || key.is_empty() {
                    return Err(PtError::Launch(format!("malformed ARGS {text:?}")));
                }
                args.push((std::mem::take(&mut key), std::mem::take(&mut value)));
                in_value = false;
                continue;
            }
            '=' if !in_value => {
                in_value = true;
                continue;
            }
            c => c,
        };
        if in_value {
            value.push(c);
        } else {
            key.push(c);
        }
    }
    if in_value && !key.is_empty() {
        args.push((key, value));
    } else if !key.is_empty() || in_value {
        return Err(PtError::Launch(format!("malformed ARGS {text:?}")));
    }
    Ok(args)
}

/// Keeps a PT running; dropping it kills the child.
#[derive(Debug)]
pub struct Supervisor {
    stop: Option<oneshot::Sender<()>>,
    pid: watch::Receiver<Option<u32>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Supervisor {
    /// Kills the PT and waits (up to 5 s) until it is reaped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// The running child's process ID (for tests and diagnostics).
    pub fn pid(&self) -> Option<u32> {
        *self.pid.borrow()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Launches the PT (errors surface here), then keeps it running: when it
/// dies it is restarted with backoff, each step reported on `events`, and
/// `methods` carries what the current child reported.
pub(crate) async fn supervise(
    spec: Spec,
    events: mpsc::Sender<PtEvent>,
) -> Result<(Supervisor, watch::Receiver<Vec<Method>>), PtError> {
    let running = launch(&spec).await?;
    let (methods_tx, methods_rx) = watch::channel(running.methods.clone());
    let (pid_tx, pid_rx) = watch::channel(running.child.id());
    let (stop_tx, stop_rx) = oneshot::channel();
    let _ = events.try_send(PtEvent::Started {
        method: spec.method.clone(),
        address: running.methods.first().map(|m| m.address),
    });
    let task = tokio::spawn(run(spec, running, events, methods_tx, pid_tx, stop_rx));
    Ok((
        Supervisor {
            stop: Some(stop_tx),
            pid: pid_rx,
            task: Some(task),
        },
        methods_rx,
    ))
}

async fn run(
    spec: Spec,
    mut running: Running,
    events: mpsc::Sender<PtEvent>,
    methods: watch::Sender<Vec<Method>>,
    pid: watch::Sender<Option<u32>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = &mut stop => {
                // kill() also waits, so no zombie is left behind.
                let _ = running.child.kill().await;
                let _ = pid.send(None);
                return;
            }
            status = running.child.wait() => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(method = %spec.method, %status, "pluggable transport exited");
                let _ = pid.send(None);
                // Its port is dead (and may be taken by another program):
                // dials wait for the next one instead.
                let _ = methods.send(Vec::new());
                let _ = events.try_send(PtEvent::Exited { method: spec.method.clone(), status });
            }
        }
        if started.elapsed() >= STABLE_UPTIME {
            backoff = BACKOFF_FIRST;
        }
        loop {
            let _ = events.try_send(PtEvent::Restarting {
                method: spec.method.clone(),
                after: backoff,
            });
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_LAST);
            match launch(&spec).await {
                Ok(next) => {
                    running = next;
                    let _ = pid.send(running.child.id());
                    let _ = methods.send(running.methods.clone());
                    let _ = events.try_send(PtEvent::Started {
                        method: spec.method.clone(),
                        address: running.methods.first().map(|m| m.address),
                    });
                    break;
                }
                Err(e) => {
                    let _ = events.try_send(PtEvent::Failed {
                        method: spec.method.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_spec_lines_obfs4proxy_prints_parse() {
        assert_eq!(parse_line("VERSION 1").unwrap(), Line::Other);
        assert_eq!(
            parse_line("CMETHOD obfs4 socks5 127.0.0.1:40000").unwrap(),
            Line::Method(Method {
                name: "obfs4".into(),
                address: "127.0.0.1:40000".parse().unwrap(),
                args: vec![],
            })
        );
        assert_eq!(parse_line("CMETHODS DONE").unwrap(), Line::Done);
        let Line::Method(m) =
            parse_line("SMETHOD obfs4 127.0.0.1:9 ARGS:cert=ab\\,c,iat-mode=0").unwrap()
        else {
            panic!("not a method");
        };
        assert_eq!(
            m.args,
            vec![
                ("cert".into(), "ab,c".into()),
                ("iat-mode".into(), "0".into())
            ]
        );
        assert!(matches!(
            parse_line("CMETHOD-ERROR obfs4 no such thing").unwrap(),
            Line::MethodError(n, msg) if n == "obfs4" && msg == "no such thing"
        ));
    }

    #[tokio::test]
    async fn endless_or_binary_output_costs_bounded_memory() {
        let mut long = vec![b'x'; 1 << 20];
        long.extend_from_slice(b"\n\xff\xfe not utf-8\nCMETHODS DONE\n");
        let mut reader = tokio::io::BufReader::new(long.as_slice());
        let first = next_line(&mut reader).await.unwrap().unwrap();
        assert_eq!(first.len(), MAX_LINE);
        let second = next_line(&mut reader).await.unwrap().unwrap();
        assert!(second.ends_with("not utf-8"));
        assert_eq!(
            next_line(&mut reader).await.unwrap().unwrap(),
            "CMETHODS DONE"
        );
        assert_eq!(next_line(&mut reader).await.unwrap(), None);
    }

    #[test]
    fn protocol_errors_and_garbage_are_errors_not_panics() {
        for line in [
            "VERSION-ERROR no-version",
            "ENV-ERROR missing TOR_PT_STATE_LOCATION",
            "CMETHOD obfs4 socks4 127.0.0.1:1",
            "CMETHOD obfs4 socks5 nonsense",
            "CMETHOD obfs4",
            "SMETHOD obfs4",
            "SMETHOD obfs4 1.2.3.4:5 ARGS:cert=x\\",
            "SMETHOD obfs4 1.2.3.4:5 ARGS:,",
        ] {
            assert!(parse_line(line).is_err(), "{line}");
        }
        assert_eq!(parse_line("").unwrap(), Line::Other);
        assert_eq!(
            parse_line("LOG SEVERITY=notice MESSAGE=\"x\"").unwrap(),
            Line::Other
        );
    }
}
