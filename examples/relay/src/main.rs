//! `ferry-relay`: an always-on Ferry store-and-forward node for a rented
//! server. Runs with no configuration at all; `--config relay.toml` sets
//! listen addresses per transport, an obfs4 bridge, quotas, the store, a
//! Prometheus endpoint and the log level (`docs/relay.md`).

mod config;
mod metrics;

use std::{io::Write as _, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context as _, Result};
use clap::Parser;
use ferry_node::{
    EngineConfig, Node, NodeEvent, Quotas, RELAY_QUOTAS,
    transports::{pt::PtServerConfig, websocket::WebSocketConfig},
};

/// Ferry's relay daemon: stores and forwards sealed envelopes for people
/// who are offline or behind a censor.
#[derive(Debug, Parser)]
#[command(name = "ferry-relay", version)]
struct Args {
    /// The TOML configuration (every key has a default; see docs/relay.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration, print what is wrong (file:line: key), exit.
    #[arg(long)]
    check_config: bool,
}

/// Prints a line to stdout, ignoring failure: a daemon whose stdout went
/// away (a closed pipe, a restarted log collector) must still shut down
/// cleanly, and `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// [`say!`] for stderr.
macro_rules! say_err {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say_err!("ferry-relay: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let config = config::Config::load(args.config.as_deref())?;
    if args.check_config {
        say!("configuration OK");
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "warn,ferry_node={0},ferry_relay={0},ferry_transports={0}",
        config.log.level
    ))
    .context("log level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(config))
}

/// The store's passphrase: from the configured file, else one generated on
/// first start next to the store (0600). A relay holds only sealed
/// envelopes; put the passphrase file on another volume for at-rest
/// protection of what it carries.
fn passphrase(config: &config::Config) -> Result<String> {
    if let Some(file) = &config.storage.passphrase_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the passphrase file {}", file.display()))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    let mut file = config.storage.path.clone().into_os_string();
    file.push(".passphrase");
    let file = PathBuf::from(file);
    if let Ok(text) = std::fs::read_to_string(&file) {
        return Ok(text.trim().to_owned());
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read /dev/urandom")?;
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(&file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    writeln!(out, "{text}").with_context(|| format!("cannot write {}", file.display()))?;
    out.sync_all()?;
    Ok(text)
}

async fn serve(config: config::Config) -> Result<()> {
    // Before anything is announced: a SIGTERM that arrives as soon as the
    // addresses are printed must stop the relay cleanly, not kill it.
    let signals = Signals::new()?;
    let passphrase = passphrase(&config)?;
    let mut builder = Node::builder()
        .storage(&config.storage.path, passphrase.as_bytes())
        .relay()
        .relay_circuits(config.relay.circuits)
        .mdns(false)
        .quic(!config.listen.quic.is_empty())
        .tcp(!config.listen.tcp.is_empty() || !config.listen.websocket.is_empty());
    for address in config
        .listen
        .tcp
        .iter()
        .chain(&config.listen.quic)
        .chain(&config.listen.websocket)
    {
        builder = builder.listen_on(address.parse()?);
    }
    if !config.listen.websocket.is_empty() {
        builder = builder.websocket(WebSocketConfig::new());
    }
    if config.obfs4.enabled {
        let state_dir = config.obfs4.state_dir.clone().unwrap_or_else(|| {
            let mut dir = config.storage.path.clone().into_os_string();
            dir.push(".obfs4");
            PathBuf::from(dir)
        });
        builder = builder.bridge_server(PtServerConfig {
            binary: config.obfs4.binary.clone(),
            state_dir,
            method: "obfs4".into(),
            bind: config.obfs4.bind.parse()?,
            public_address: config
                .obfs4
                .public_address
                .as_deref()
                .map(str::parse)
                .transpose()?,
            options: vec![("iat-mode".into(), "0".into())],
        });
    }
    let q = &config.quotas;
    if q.global_mib.is_some() || q.per_recipient_mib.is_some() || q.per_source_mib.is_some() {
        let mib = |v: Option<u64>, default: u64| v.map_or(default, |m| m.saturating_mul(1 << 20));
        builder = builder.engine(EngineConfig {
            quotas: Quotas {
                global_bytes: mib(q.global_mib, RELAY_QUOTAS.global_bytes),
                per_tag_bytes: mib(q.per_recipient_mib, RELAY_QUOTAS.per_tag_bytes),
                per_peer_bytes: mib(q.per_source_mib, RELAY_QUOTAS.per_peer_bytes),
            },
            stranger_custody_secs: 7 * 24 * 3600,
            ..EngineConfig::default()
        });
    }
    let node_config = builder.build().context("configuration refused")?;
    let node = Arc::new(
        Node::start(node_config)
            .await
            .context("cannot start the node")?,
    );

    say!("ferry-relay {} running", env!("CARGO_PKG_VERSION"));
    say!("peer id {}", node.peer_id());
    for address in node.listen_addrs().await? {
        say!("listening on {address}");
    }
    if let Some(line) = node.bridge_line().await? {
        say!("bridge line (paste into ferry-chat): {line}");
    }
    if let Some(listen) = &config.metrics.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("metrics: cannot listen on {listen}"))?;
        say!("metrics on http://{}/metrics", listener.local_addr()?);
        tokio::spawn(metrics::serve(listener, node.clone()));
    }
    let _ = std::io::stdout().flush();

    // The events are read (and logged) so the queues never fill.
    if let Some(mut events) = node.events() {
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    NodeEvent::PluggableTransport(pt) => tracing::warn!(?pt, "pluggable transport"),
                    NodeEvent::Lagged { missed } => tracing::debug!(missed, "events dropped"),
                    other => tracing::debug!(?other, "event"),
                }
            }
        });
    }

    signals.wait().await;
    say!("shutting down: flushing the store");
    let _ = std::io::stdout().flush();
    node.shutdown().await;
    say!("stopped");
    Ok(())
}

/// SIGTERM (systemd, docker) and SIGINT (Ctrl-C), caught from the
/// moment they are registered.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
