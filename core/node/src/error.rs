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
    /// A contact code was refused; the reason says whether it is a typo
    /// (checksum), not a Ferry code (prefix), too long, or a card that is
    /// malformed or forged (signature).
    #[error("invalid contact code: {0}")]
    InvalidCode(#[from] ferry_core::contact::CodeError),
    /// The identity is this node's own: it cannot be a contact or a
    /// recipient.
    #[error("that is this node's own identity")]
    OwnIdentity,
    /// A message body is over [`crate::MAX_MESSAGE_BODY`]; nothing was
    /// stored.
    #[error("message body of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        max: usize,
    },
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
