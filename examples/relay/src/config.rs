//! The relay's TOML configuration: every key has a default, so no file at
//! all gives a working relay; unknown keys and wrong types are errors that
//! name the key and its line.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context as _, Result, bail};
use ferry_node::Multiaddr;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// Where the store lives and how it is unlocked.
    pub(crate) storage: Storage,
    /// Addresses to listen on, per transport.
    pub(crate) listen: Listen,
    /// The obfs4 bridge (a pluggable-transport server in front of the node).
    pub obfs4: Obfs4,
    /// The libp2p relay v2 server (circuits for clients behind NAT).
    pub(crate) relay: RelayServer,
    /// Custody quotas, in MiB.
    pub(crate) quotas: Quotas,
    /// The Prometheus endpoint.
    pub(crate) metrics: Metrics,
    /// Logging.
    pub(crate) log: Log,
}

/// `[storage]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Storage {
    /// The store's directory.
    pub(crate) path: PathBuf,
    /// A file holding the store's passphrase. Without one, a random
    /// passphrase is created in `<path>.passphrase` (0600) on first start.
    pub(crate) passphrase_file: Option<PathBuf>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            path: PathBuf::from("ferry-relay-data"),
            passphrase_file: None,
        }
    }
}

/// `[listen]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Listen {
    /// TCP multiaddrs.
    pub(crate) tcp: Vec<String>,
    /// QUIC multiaddrs.
    pub(crate) quic: Vec<String>,
    /// WebSocket multiaddrs (`/ws`; `/tls/ws` needs a certificate, not
    /// configurable here yet).
    pub(crate) websocket: Vec<String>,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            tcp: vec!["/ip4/0.0.0.0/tcp/4001".into()],
            quic: vec!["/ip4/0.0.0.0/udp/4001/quic-v1".into()],
            websocket: Vec::new(),
        }
    }
}

/// `[obfs4]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Obfs4 {
    /// Run an obfs4 bridge.
    pub(crate) enabled: bool,
    /// The obfs4proxy binary.
    pub(crate) binary: PathBuf,
    /// Where obfs4proxy listens (a fixed port: the bridge line names it).
    pub(crate) bind: String,
    /// The address users reach it at, if not `bind` (NAT, wildcard).
    pub(crate) public_address: Option<String>,
    /// obfs4's state (its keys, so the bridge line survives restarts).
    pub(crate) state_dir: Option<PathBuf>,
}

impl Default for Obfs4 {
    fn default() -> Self {
        Self {
            enabled: false,
            binary: PathBuf::from("obfs4proxy"),
            bind: "0.0.0.0:4003".into(),
            public_address: None,
            state_dir: None,
        }
    }
}

/// `[relay]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RelayServer {
    /// Serve libp2p relay v2 circuits.
    pub(crate) circuits: bool,
}

impl Default for RelayServer {
    fn default() -> Self {
        Self { circuits: true }
    }
}

/// `[quotas]` (MiB; unset: the node's relay defaults, 1024 / 16 / 256).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Quotas {
    /// All envelopes together.
    pub(crate) global_mib: Option<u64>,
    /// Envelopes for one recipient tag.
    pub(crate) per_recipient_mib: Option<u64>,
    /// Envelopes from one source network.
    pub(crate) per_source_mib: Option<u64>,
}

/// `[metrics]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Metrics {
    /// Where to serve Prometheus text (e.g. `127.0.0.1:9464`); off if unset.
    pub(crate) listen: Option<String>,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Log {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub(crate) level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// A config error, with where it is.
fn at(source: &str, path: &str, offset: Option<usize>, message: &str) -> anyhow::Error {
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

impl Config {
    /// Reads and checks `path` (or the defaults, without one).
    pub(crate) fn load(path: Option<&std::path::Path>) -> Result<Self> {
        let Some(path) = path else {
            let config = Self::default();
            config.check("(defaults)", "")?;
            return Ok(config);
        };
        let name = path.display().to_string();
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("{name}: cannot read the config file"))?;
        let config: Self = toml::from_str(&source).map_err(|e| {
            let message = e.message().replace('\n', " ");
            at(&source, &name, e.span().map(|s| s.start), &message)
        })?;
        config.check(&name, &source)?;
        Ok(config)
    }

    /// Value checks serde cannot make (addresses, levels, quotas).
    fn check(&self, name: &str, source: &str) -> Result<()> {
        let line_of = |key: &str| source.find(key);
        for (section, list) in [
            ("tcp", &self.listen.tcp),
            ("quic", &self.listen.quic),
            ("websocket", &self.listen.websocket),
        ] {
            for address in list {
                if address.parse::<Multiaddr>().is_err() {
                    return Err(at(
                        source,
                        name,
                        line_of(address),
                        &format!("listen.{section}: `{address}` is not a multiaddr"),
                    ));
                }
            }
        }
        if self.obfs4.bind.parse::<SocketAddr>().is_err() {
            return Err(at(
                source,
                name,
                line_of("bind"),
                &format!("obfs4.bind: `{}` is not an address:port", self.obfs4.bind),
            ));
        }
        if let Some(public) = &self.obfs4.public_address
            && public.parse::<SocketAddr>().is_err()
        {
            return Err(at(
                source,
                name,
                line_of("public_address"),
                &format!("obfs4.public_address: `{public}` is not an address:port"),
            ));
        }
        if let Some(listen) = &self.metrics.listen
            && listen.parse::<SocketAddr>().is_err()
        {
            return Err(at(
                source,
                name,
                line_of("listen ="),
                &format!("metrics.listen: `{listen}` is not an address:port"),
            ));
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(at(
                source,
                name,
                line_of("level"),
                &format!(
                    "log.level: `{}` is not one of error, warn, info, debug, trace",
                    self.log.level
                ),
            ));
        }
        for (key, value) in [
            ("global_mib", self.quotas.global_mib),
            ("per_recipient_mib", self.quotas.per_recipient_mib),
            ("per_source_mib", self.quotas.per_source_mib),
        ] {
            if value == Some(0) {
                return Err(at(
                    source,
                    name,
                    line_of(key),
                    &format!("quotas.{key}: must be at least 1"),
                ));
            }
        }
        if self.listen.tcp.is_empty()
            && self.listen.quic.is_empty()
            && self.listen.websocket.is_empty()
        {
            bail!("{name}: [listen] has no address: the relay would be unreachable");
        }
        Ok(())
    }
}
