//! The Ferry node: the store-and-forward engine ([`ferry_core::engine`])
//! on a libp2p gossip overlay, driven by tokio, with the Rust API apps
//! embed (the C ABI and the example clients wrap this crate).
//!
//! - [`Node::builder`] → [`NodeBuilder::build`] validates a [`NodeConfig`];
//!   [`Node::start`] opens the encrypted store and the network.
//! - [`Node::send`] returns once a message is durable; receipts,
//!   messages, contact requests, key changes, peers and sync progress
//!   arrive on the [`EventStream`].
//! - One composed libp2p behaviour: gossipsub (anonymous, content-hash
//!   message IDs, peer scoring, validation by the engine), a
//!   request-response protocol for reconciliation, pulls and pairing,
//!   mDNS, relay v2 client and server, dcutr, autonat, minimal identify,
//!   ping and connection limits, over TCP, QUIC and any boxed transport the
//!   app adds ([`NodeBuilder::transport`]).
//!
//! See ARCHITECTURE.md for the design and its trade-offs.

mod app_data;
mod behaviour;
mod bundles;
mod codec;
mod config;
mod counting;
mod driver;
mod error;
mod events;
mod gate;
mod hole_punch;
mod ip_class;
mod mdns_filter;
mod node;
mod pairing_gate;
mod rate;
mod relay_limits;
mod source;
mod ways_out;

pub use app_data::{MAX_PAGE, StoredMessage};
pub use bundles::{BundleFileError, ExportReport, ImportReport};
pub use config::{
    ConfigError, GossipParams, Limits, NetworkKey, NodeBuilder, NodeConfig, RELAY_QUOTAS, Role,
    TransportFactory, TransportKind,
};
pub use error::NodeError;
pub use events::{EventStream, NodeEvent, ReceivedMessage};
/// The transports crate, re-exported: WebSocket and TLS settings,
/// pluggable transports and bridge lines, attached links.
pub use ferry_transports as transports;
pub use gate::GateRefusals;
pub use node::{
    ContactInfo, DIAL_TIMEOUT, MAX_LINK_LABEL, MAX_MESSAGE_BODY, MAX_NICKNAME, Node, NodeStats,
    SendOptions,
};
pub use pairing_gate::{PairingRefusal, PairingRefusals};
pub use ways_out::{PeerInfo, Route};

/// Re-exports apps need alongside the node, including every error type a
/// [`NodeError`] wraps, so causes can be matched with this crate alone.
pub use ferry_core::{
    bundle::{BundleError, BundleLimits},
    contact::{CardError, CodeError, ContactCard},
    crypto::{ContactUpdate, PairingError, SealError, ShortAuthString, Trust},
    engine::{
        EngineConfig, EngineError, ExportFilter, FailReason, ImportSummary, InvalidMessageId,
        MessageId, MessageStatus, Quotas, RejectReason, SendError, Strategy,
    },
    identity::IssueCardError,
    keys::IdentityKey,
    safety::SafetyNumber,
};
pub use ferry_store::{KdfParams, LOCK_WAIT, StoreError};
pub use ferry_transports::pt::PtError;
pub use libp2p::{Multiaddr, PeerId, multiaddr};

#[doc(hidden)]
pub mod bench_support {
    //! The bare-overlay baseline for the benchmark: the same gossipsub
    //! configuration Ferry uses, without Ferry. Not a stable API.
    pub use crate::behaviour::{
        COLOCATION_THRESHOLD, IDENTIFY_AGENT, IDENTIFY_PROTOCOL_VERSION, TOPIC, counted_tcp,
        gossipsub_config, message_id, peer_score,
    };
    pub use crate::counting::ByteCounters;
}
