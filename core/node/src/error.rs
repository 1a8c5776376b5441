//! The node's error type.

use thiserror::Error;

/// Why a node call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened (wrong passphrase, corruption, I/O).
    #[error("store: {0}")]
    Store(#[from] ferry_store::StoreError),
    /// The engine failed (store write, unreadable state).
    #[error(transparent)]
    Engine(#[from] ferry_core::engine::EngineError),
    /// A message could not be sealed or stored; nothing was sent.
    #[error(transparent)]
    Send(#[from] ferry_core::engine::SendError),
    /// A contact code is malformed or its card badly signed.
    #[error("invalid contact code")]
    InvalidCode,
    /// A card could not be issued.
    #[error("cannot issue a card: {0}")]
    Card(#[from] ferry_core::identity::IssueCardError),
    /// The network could not start (transport, listen address).
    #[error("network: {0}")]
    Network(String),
    /// A dial failed at once (bad address, no transport for it).
    #[error("dial: {0}")]
    Dial(String),
    /// No such connected peer, or no pairing waiting with it.
    #[error("unknown peer")]
    UnknownPeer,
    /// A pairing was not started: see the reason (closed, busy, rate
    /// limited); retry later or finish the pairing in progress.
    #[error("pairing refused: {0:?}")]
    PairingRefused(crate::pairing_gate::PairingRefusal),
    /// The pairing handshake failed.
    #[error(transparent)]
    Pairing(#[from] ferry_core::crypto::PairingError),
    /// A pluggable transport did not start (it broke the managed-proxy
    /// protocol, refused its method, or reported nothing in time).
    #[error(transparent)]
    PluggableTransport(#[from] ferry_transports::pt::PtError),
    /// A bundle could not be written, or was refused whole.
    #[error(transparent)]
    Bundle(#[from] crate::bundles::BundleFileError),
    /// An argument was refused (a link label too long, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The node has shut down.
    #[error("the node has shut down")]
    Closed,
}
