//! Flags and the optional TOML file: how the chat reaches the network.
//! Every key has a default (TCP and QUIC on every interface, LAN
//! discovery on); flags add to lists and override switches.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use ferry_node::{
    Multiaddr, NodeBuilder,
    transports::{
        pt::{BridgeLine, PtClientConfig},
        websocket::WebSocketConfig,
    },
};
use serde::Deserialize;

/// ferry-chat: an end-to-end encrypted messenger that keeps working in a
/// shutdown (over the Internet, a LAN, an obfs4 bridge or a USB stick).
#[derive(Debug, Parser)]
#[command(name = "ferry-chat", version, about, long_about = None)]
pub(crate) struct Args {
    /// Where your identity, contacts and messages live (encrypted).
    /// Default: $XDG_DATA_HOME/ferry-chat, else ~/.local/share/ferry-chat.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A TOML file with network settings (default: config.toml in the
    /// data directory, if there is one).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The name on the contact codes you give out (others see it). Give
    /// it on every run, or put `name = "…"` in the config file; on the
    /// first run the chat writes it there for you.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Listen on this address (repeatable), e.g. /ip4/0.0.0.0/tcp/4001.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) listen: Vec<String>,
    /// Keep connecting to this peer (repeatable); ends in /p2p/<peer id>.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Use this relay (repeatable): stay connected to it and let it carry
    /// your messages (and hold them for you while you are away).
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) relay: Vec<String>,
    /// An obfs4 bridge line from a relay's operator (repeatable).
    #[arg(long, value_name = "LINE")]
    pub(crate) bridge: Vec<String>,
    /// The obfs4proxy (or lyrebird) binary for bridges.
    #[arg(long, value_name = "PATH")]
    pub(crate) obfs4proxy: Option<PathBuf>,
    /// Turn plain TCP off.
    #[arg(long)]
    pub(crate) no_tcp: bool,
    /// Turn QUIC off.
    #[arg(long)]
    pub(crate) no_quic: bool,
    /// Allow WebSocket (and WebSocket over TLS) addresses.
    #[arg(long)]
    pub(crate) websocket: bool,
    /// Do not look for (or announce yourself to) peers on the LAN.
    #[arg(long)]
    pub(crate) no_lan: bool,
    /// Destroy all keys, contacts and messages in the data directory
    /// (asks once to confirm), then exit.
    #[arg(long)]
    pub(crate) panic_wipe: bool,
    /// Check the config file and flags, then exit.
    #[arg(long)]
    pub(crate) check_config: bool,
    /// Write diagnostics (warnings and errors, never message text) to
    /// this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) log: Option<PathBuf>,
}

/// The file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct File {
    /// The name on your card (first run).
    pub(crate) name: Option<String>,
    /// `[network]`
    pub(crate) network: Network,
    /// `[obfs4]`
    pub(crate) obfs4: Obfs4,
    /// `[privacy]`
    pub(crate) privacy: Privacy,
}

/// `[privacy]`: the random waits that keep a watcher from pairing a
/// message with its receipt (unset: the node's defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Privacy {
    /// Seconds (from, to) before a receipt for a message we got is
    /// released (node default 30–300).
    pub(crate) receipt_delay_secs: Option<[u64; 2]>,
    /// Seconds (from, to) before a delivery proof we learned is passed on
    /// (node default 30–120).
    pub(crate) proof_delay_secs: Option<[u64; 2]>,
}

/// `[network]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Network {
    /// Plain TCP.
    pub(crate) tcp: bool,
    /// QUIC.
    pub(crate) quic: bool,
    /// WebSocket addresses.
    pub(crate) websocket: bool,
    /// mDNS discovery and automatic LAN connections.
    pub(crate) lan: bool,
    /// Listen addresses (default: every interface, a random port).
    pub(crate) listen: Vec<String>,
    /// Bootstrap peers.
    pub(crate) bootstrap: Vec<String>,
    /// Relays.
    pub(crate) relays: Vec<String>,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            tcp: true,
            quic: true,
            websocket: false,
            lan: true,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            relays: Vec::new(),
        }
    }
}

/// `[obfs4]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Obfs4 {
    /// The PT binary.
    pub(crate) binary: PathBuf,
    /// Bridge lines.
    pub(crate) bridges: Vec<String>,
}

impl Default for Obfs4 {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("obfs4proxy"),
            bridges: Vec::new(),
        }
    }
}

/// Everything resolved: what the node is built with.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The data directory.
    pub(crate) data_dir: PathBuf,
    /// The card's name.
    pub(crate) name: Option<String>,
    tcp: bool,
    quic: bool,
    websocket: bool,
    pub(crate) lan: bool,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    relays: Vec<Multiaddr>,
    bridges: Vec<BridgeLine>,
    obfs4proxy: PathBuf,
    delays: Option<((u64, u64), (u64, u64))>,
}

/// `~/.local/share/ferry-chat`, honouring `XDG_DATA_HOME`.
fn default_data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("ferry-chat"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no HOME: pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/ferry-chat"))
}

/// `path:line: message` from a byte offset into `source`.
fn at(source: &str, path: &Path, offset: Option<usize>, message: &str) -> anyhow::Error {
    let path = path.display();
    match offset {
        Some(offset) => {
            let line = source
                .get(..offset)
                .map_or(1, |before| before.matches('\n').count() + 1);
            anyhow::anyhow!("{path}:{line}: {message}")
        }
        None => anyhow::anyhow!("{path}: {message}"),
    }
}

fn parse_addrs(
    what: &str,
    list: &[String],
    source: &str,
    path: Option<&Path>,
) -> Result<Vec<Multiaddr>> {
    list.iter()
        .map(|a| {
            a.trim().parse::<Multiaddr>().map_err(|_| {
                let message = format!("{what}: `{a}` is not a multiaddr");
                match path {
                    Some(p) if source.contains(a.as_str()) => {
                        at(source, p, source.find(a), &message)
                    }
                    _ => anyhow::anyhow!("{message}"),
                }
            })
        })
        .collect()
}

fn needs_peer(what: &str, list: &[Multiaddr]) -> Result<()> {
    for a in list {
        if !a
            .iter()
            .any(|p| matches!(p, ferry_node::multiaddr::Protocol::P2p(_)))
        {
            bail!("{what}: `{a}` must end in /p2p/<peer id>");
        }
    }
    Ok(())
}

impl Settings {
    /// Merges the file (if any) and the flags, checking every value.
    pub(crate) fn resolve(args: &Args) -> Result<Self> {
        let data_dir = match &args.data_dir {
            Some(d) => d.clone(),
            None => default_data_dir()?,
        };
        let default_file = data_dir.join("config.toml");
        let path = match &args.config {
            Some(p) => Some(p.clone()),
            None => default_file.is_file().then_some(default_file),
        };
        let (file, source) = match &path {
            None => (File::default(), String::new()),
            Some(p) => {
                let source = std::fs::read_to_string(p)
                    .with_context(|| format!("{}: cannot read the config file", p.display()))?;
                let file: File = toml::from_str(&source).map_err(|e| {
                    let message = e.message().replace('\n', " ");
                    at(&source, p, e.span().map(|s| s.start), &message)
                })?;
                (file, source)
            }
        };
        let path = path.as_deref();
        let mut listen = parse_addrs("network.listen", &file.network.listen, &source, path)?;
        listen.extend(parse_addrs("--listen", &args.listen, "", None)?);
        let mut bootstrap =
            parse_addrs("network.bootstrap", &file.network.bootstrap, &source, path)?;
        bootstrap.extend(parse_addrs("--bootstrap", &args.bootstrap, "", None)?);
        let mut relays = parse_addrs("network.relays", &file.network.relays, &source, path)?;
        relays.extend(parse_addrs("--relay", &args.relay, "", None)?);
        needs_peer("bootstrap", &bootstrap)?;
        needs_peer("relay", &relays)?;
        let mut bridges = Vec::new();
        for line in &file.obfs4.bridges {
            bridges.push(line.parse::<BridgeLine>().map_err(|e| {
                let offset = path.and(source.find(line.as_str()));
                match path {
                    Some(p) => at(&source, p, offset, &format!("obfs4.bridges: {e}")),
                    None => anyhow::anyhow!("obfs4.bridges: {e}"),
                }
            })?);
        }
        for line in &args.bridge {
            bridges.push(
                line.parse::<BridgeLine>()
                    .map_err(|e| anyhow::anyhow!("--bridge: {e}"))?,
            );
        }
        let name = args.name.clone().or(file.name);
        // The card's own rules: 1 to 64 bytes, no control or direction
        // characters (a card with such a name could never be issued).
        if let Some(n) = &name
            && (n.trim().is_empty() || n.len() > 64 || crate::app::clean(n, false) != *n)
        {
            bail!("name: 1 to 64 bytes without control or direction characters");
        }
        let delays = match (
            file.privacy.proof_delay_secs,
            file.privacy.receipt_delay_secs,
        ) {
            (None, None) => None,
            (Some([a, b]), Some([c, d])) => {
                if a > b || c > d {
                    bail!("privacy: a delay range must be [from, to] with from <= to");
                }
                Some(((a, b), (c, d)))
            }
            _ => bail!("privacy: set receipt_delay_secs and proof_delay_secs together"),
        };
        let settings = Self {
            data_dir,
            name,
            tcp: file.network.tcp && !args.no_tcp,
            quic: file.network.quic && !args.no_quic,
            websocket: file.network.websocket || args.websocket,
            lan: file.network.lan && !args.no_lan,
            listen,
            bootstrap,
            relays,
            bridges,
            obfs4proxy: args.obfs4proxy.clone().unwrap_or(file.obfs4.binary),
            delays,
        };
        if !settings.tcp && !settings.quic && !settings.websocket && settings.bridges.is_empty() {
            bail!("every transport is off: keep TCP, QUIC or WebSocket, or add a bridge");
        }
        Ok(settings)
    }

    /// The store's directory inside the data directory.
    pub(crate) fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// A one-line summary of the ways out, for the status bar.
    pub(crate) fn summary(&self) -> String {
        let mut ways = Vec::new();
        for (on, name) in [
            (self.tcp, "tcp"),
            (self.quic, "quic"),
            (self.websocket, "websocket"),
            (self.lan, "lan"),
            (!self.bridges.is_empty(), "obfs4"),
            (!self.relays.is_empty(), "relay"),
        ] {
            if on {
                ways.push(name);
            }
        }
        ways.join(" ")
    }

    /// The node's configuration (storage is added by the caller).
    pub(crate) fn apply(&self, mut builder: NodeBuilder) -> Result<NodeBuilder> {
        builder = builder
            .tcp(self.tcp)
            .quic(self.quic)
            .mdns(self.lan)
            .mdns_auto_dial(self.lan);
        if let Some(name) = &self.name {
            builder = builder.display_name(name);
        }
        if self.websocket {
            builder = builder.websocket(WebSocketConfig::new());
        }
        if let Some((proofs, receipts)) = self.delays {
            builder = builder.delivery_delays(proofs, receipts);
        }
        let mut listen = self.listen.clone();
        if listen.is_empty() {
            if self.tcp {
                listen.push("/ip4/0.0.0.0/tcp/0".parse()?);
            }
            if self.quic {
                listen.push("/ip4/0.0.0.0/udp/0/quic-v1".parse()?);
            }
        }
        for address in listen {
            builder = builder.listen_on(address);
        }
        for address in &self.bootstrap {
            builder = builder.bootstrap(address.clone());
        }
        for relay in &self.relays {
            builder = builder.bootstrap(relay.clone());
            if let Some(ferry_node::multiaddr::Protocol::P2p(peer)) = relay.iter().last() {
                builder = builder.trusted_peer(peer);
            }
            // No circuit listener: messages reach us through the relay's
            // store-and-forward, and a reservation the relay refuses (one
            // not reachable from outside grants none) would stop the chat.
        }
        if !self.bridges.is_empty() {
            builder = builder.bridges(PtClientConfig {
                binary: self.obfs4proxy.clone(),
                state_dir: self.data_dir.join("obfs4-client"),
                bridges: self.bridges.clone(),
            });
        }
        Ok(builder)
    }
}
