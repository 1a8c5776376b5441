//! The app-facing handle: [`Node`].

use std::{sync::Mutex, time::Duration};

use ferry_core::engine::{ExportFilter, ImportSummary};
use ferry_core::{
    contact::ContactCard,
    crypto::{ContactUpdate, Trust},
    engine::{Counters, MessageId},
    keys::IdentityKey,
    safety::SafetyNumber,
};
use ferry_transports::{pipe::LinkId, pt::BridgeLine};

use crate::{
    app_data::{AppCommand, StoredMessage},
    bundles::{ExportReport, ImportReport},
    ways_out::PeerInfo,
};
use ferry_core::engine::MessageStatus;

/// The longest nickname [`Node::rename_contact`] accepts, in bytes.
pub const MAX_NICKNAME: usize = 64;
use libp2p::{Multiaddr, PeerId};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    config::{NodeBuilder, NodeConfig},
    driver,
    error::NodeError,
    events::EventStream,
};

/// One of the app's contacts.
#[derive(Clone)]
pub struct ContactInfo {
    /// Their identity key.
    pub identity: IdentityKey,
    /// The display name on their card, if any (chosen by them).
    pub display_name: Option<String>,
    /// The user's own name for them ([`Node::rename_contact`]), if any.
    pub nickname: Option<String>,
    /// Whether the user verified them (pairing or safety number).
    pub verified: bool,
}

impl std::fmt::Debug for ContactInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names are the user's data: never in logs.
        f.debug_struct("ContactInfo")
            .field("identity", &self.identity)
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

impl ContactInfo {
    /// The name to show: the user's nickname, else the card's display
    /// name, else `None` (show the safety number or a short key).
    pub fn name(&self) -> Option<&str> {
        self.nickname.as_deref().or(self.display_name.as_deref())
    }
}

/// The largest message body [`Node::send`] accepts, in bytes. A body is
/// sealed into one envelope padded to at most 64 KiB; the rest of the
/// envelope is the encryption's and the wire format's overhead (largest
/// for a contact's first message, which starts a session).
pub const MAX_MESSAGE_BODY: usize = 65_000;

/// How long [`Node::dial`] waits for the connection before giving up.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters for observability and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// The engine's counters (stored, expired, rejected, duplicates, sync).
    pub engine: Counters,
    /// Bytes received on all protocol streams.
    pub bytes_in: u64,
    /// Bytes sent on all protocol streams.
    pub bytes_out: u64,
    /// Gossip messages received (before validation).
    pub gossip_received: u64,
    /// Gossip messages validated as invalid (the peer is penalised).
    pub gossip_rejected: u64,
    /// Envelopes this node published on gossip (own, or new from sync).
    pub gossip_published: u64,
    /// Sync frames received.
    pub frames_received: u64,
    /// Sync frames sent.
    pub frames_sent: u64,
    /// Peers with a live connection.
    pub connected_peers: usize,
    /// Envelopes in custody, ours included.
    pub held_envelopes: usize,
    /// Our own envelopes among them (messages waiting for a receipt, our
    /// receipts, contact requests). `held_envelopes - held_own` is what this
    /// node carries for others: on a relay, whether it holds your message.
    pub held_own: usize,
    /// Bytes of envelopes in custody.
    pub held_bytes: u64,
    /// Our messages waiting for a receipt.
    pub outbox: usize,
    /// Messages, receipts and safety events dropped because the app did
    /// not keep up (each drop leads to a `Lagged` event).
    pub events_dropped: u64,
    /// Churn events dropped because the app did not keep up.
    pub churn_events_dropped: u64,
    /// Connections the connection gate refused, by reason.
    pub connections_refused: crate::gate::GateRefusals,
    /// Established inbound connections from untrusted peers.
    pub inbound_connections: u32,
    /// Bytes of direct-link frames being read now (node-wide).
    pub frame_buffer_bytes: usize,
    /// Frames refused because the node-wide frame buffer was spent.
    pub frames_refused_memory: u64,
    /// Hole-punch attempts refused for their candidate addresses.
    pub hole_punches_refused: u64,
    /// Envelopes gossipsub took but could not queue to any peer (all
    /// queues full). They stay in custody; reconciliation carries them.
    pub gossip_queue_full: u64,
    /// Times the envelopes waiting for a gossip peer were published again.
    pub pending_publish_flushes: u64,
    /// Envelopes waiting for a gossip peer.
    pub pending_publish: usize,
    /// mDNS answers not dialled because their address is not on a local
    /// network.
    pub mdns_addresses_refused: u64,
    /// Relay circuit requests refused because their source holds its share
    /// of open circuits (relays).
    pub circuits_refused: u64,
    /// Inbound connections closed because the peer never used Ferry (no
    /// gossip subscription, link frame, reservation or circuit) within the
    /// idle timeout.
    pub idle_connections_closed: u64,
    /// Pairing attempts refused, by reason.
    pub pairing_refusals: crate::pairing_gate::PairingRefusals,
}

/// Options for one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Lifetime in seconds (default: the engine's `message_ttl_secs`;
    /// capped at `max_ttl_secs`).
    pub ttl_secs: Option<u64>,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// A request from the handle to the driver task.
pub(crate) enum Command {
    Send {
        to: IdentityKey,
        body: Vec<u8>,
        options: SendOptions,
        reply: Reply<MessageId>,
    },
    AddContact {
        card: Box<ContactCard>,
        trust: Trust,
        reply: Reply<ContactUpdate>,
    },
    ContactCode {
        one_time_keys: usize,
        reply: Reply<String>,
    },
    ContactRequest {
        to: IdentityKey,
        introduction: String,
        reply: Reply<()>,
    },
    Contacts {
        reply: Reply<Vec<ContactInfo>>,
    },
    Ack {
        message_id: MessageId,
        reply: Reply<bool>,
    },
    Dial {
        address: Multiaddr,
        reply: Reply<PeerId>,
    },
    App(crate::app_data::AppCommand),
    Wipe {
        reply: Reply<()>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    Listeners {
        reply: Reply<Vec<Multiaddr>>,
    },
    ConnectedPeers {
        reply: Reply<Vec<PeerId>>,
    },
    Stats {
        reply: Reply<NodeStats>,
    },
    PeerScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
    AllowPairing {
        open: bool,
        reply: Reply<()>,
    },
    Pair {
        peer: PeerId,
        reply: Reply<()>,
    },
    ConfirmPairing {
        peer: PeerId,
        accept: bool,
        reply: Reply<Option<IdentityKey>>,
    },
    AttachLink {
        stream: ferry_transports::Stream,
        label: String,
        reply: Reply<LinkId>,
    },
    BridgeLine {
        reply: Reply<Option<BridgeLine>>,
    },
    Peers {
        reply: Reply<Vec<PeerInfo>>,
    },
    ExportEnvelopes {
        filter: ExportFilter,
        reply: Reply<(Vec<Vec<u8>>, Vec<ferry_core::crypto::tags::ContentId>)>,
    },
    ImportEnvelopes {
        envelopes: Vec<Vec<u8>>,
        reply: Reply<ImportSummary>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Envelopes imported per engine step (see [`Node::import_bundle`]).
const IMPORT_CHUNK: usize = 512;

/// Longest label an attached link may carry.
pub const MAX_LINK_LABEL: usize = 128;

/// A running Ferry node: the store-and-forward engine on a libp2p gossip
/// overlay. Share it with `Arc<Node>`; every method takes `&self`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use ferry_node::{MessageStatus, Node, NodeEvent};
///
/// let config = Node::builder()
///     .storage("/tmp/ferry-alice", "passphrase")
///     .listen_on("/ip4/0.0.0.0/tcp/0".parse()?)
///     .build()?;
/// let node = Node::start(config).await?;
/// println!("my code: {}", node.contact_code().await?);
/// let bob = node.add_contact("ferry1…").await?;
/// let id = node.send(&bob, b"hello").await?; // durable once this returns
/// let mut events = node.events().ok_or("events taken")?;
/// while let Some(event) = events.next().await {
///     match event {
///         NodeEvent::MessageStatus { message_id, status: MessageStatus::Delivered }
///             if message_id == id => break,
///         NodeEvent::Message(m) => { node.ack(m.message_id).await?; }
///         _ => {}
///     }
/// }
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    events: Mutex<Option<EventStream>>,
    peer_id: PeerId,
    identity: IdentityKey,
    task: Mutex<Option<JoinHandle<()>>>,
    bundle_limits: ferry_core::bundle::BundleLimits,
}

/// One-time prekeys on a card given out as a code: none. A code may reach
/// several people, so senders never use its one-time keys (they start from
/// the fallback key; docs/crypto.md, "shared codes"); carrying them only
/// lengthened the code by 208 characters, pushed its terminal QR code past
/// 80 columns, and spent the account's bounded pool on every issue.
const CODE_ONE_TIME_KEYS: usize = 0;

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// Opens the store (creating an identity on first use), starts the
    /// network, and returns once every listen address is bound. Must be
    /// called inside a tokio runtime.
    ///
    /// Opening the store runs Argon2id over the passphrase (the default
    /// cost takes 0.2–0.5 s optimised, 3–4 s in a debug build whose
    /// dependencies are not optimised: see the README). If another handle
    /// in this process is still closing the same store, this waits up to
    /// [`crate::LOCK_WAIT`] (3 s) for its lock.
    ///
    /// # Errors
    /// [`NodeError::Store`] with [`crate::StoreError::WrongPassphrase`],
    /// [`crate::StoreError::Locked`] (another node or process has it open),
    /// corruption or a destroyed key; [`NodeError::Network`] if the network
    /// cannot start.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let (commands, rx) = mpsc::channel(256);
        let (events_tx, events_rx) = mpsc::channel(config.event_queue);
        let (churn_tx, churn_rx) = mpsc::channel(config.event_queue);
        let bundle_limits = config.bundle_limits;
        let started = driver::Driver::start(config, rx, events_tx, churn_tx).await?;
        let peer_id = started.peer_id;
        let identity = started.identity;
        let task = tokio::spawn(started.driver.run());
        Ok(Self {
            commands,
            events: Mutex::new(Some(EventStream {
                rx: events_rx,
                churn: churn_rx,
            })),
            peer_id,
            identity,
            task: Mutex::new(Some(task)),
            bundle_limits,
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Closed)?;
        rx.await.map_err(|_| NodeError::Closed)?
    }

    /// The event stream (once; later calls return `None`).
    pub fn events(&self) -> Option<EventStream> {
        self.events.lock().ok()?.take()
    }

    /// Our Ferry identity key.
    pub fn identity(&self) -> IdentityKey {
        self.identity
    }

    /// Our network ID this run (unlinkable to the identity).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Issues a fresh contact code (`ferry1…`) to give to people (scan,
    /// paste, read out): the card with our keys, name and issue time, no
    /// one-time prekeys.
    ///
    /// # Errors
    /// [`NodeError`] if the card cannot be issued or saved.
    pub async fn contact_code(&self) -> Result<String, NodeError> {
        self.call(|reply| Command::ContactCode {
            one_time_keys: CODE_ONE_TIME_KEYS,
            reply,
        })
        .await
    }

    /// Adds a contact from their code (unverified until the safety number
    /// is compared or the contact is paired).
    ///
    /// # Errors
    /// [`NodeError::InvalidCode`] saying what is wrong with the code (a
    /// typo, not a Ferry code, a forged card), [`NodeError::OwnIdentity`]
    /// for our own code.
    pub async fn add_contact(&self, code: &str) -> Result<IdentityKey, NodeError> {
        let card = ContactCard::from_code(code)?;
        let key = *card.identity_key();
        if key == self.identity {
            return Err(NodeError::OwnIdentity);
        }
        // A key change also arrives as `NodeEvent::KeyChanged`.
        let _update = self.add_contact_card(card, Trust::Unverified).await?;
        Ok(key)
    }

    /// Adds or updates a contact from a card (e.g. a contact request's).
    ///
    /// # Errors
    /// [`NodeError`] if the card's keys are unusable or saving fails.
    pub async fn add_contact_card(
        &self,
        card: ContactCard,
        trust: Trust,
    ) -> Result<ContactUpdate, NodeError> {
        if *card.identity_key() == self.identity {
            return Err(NodeError::OwnIdentity);
        }
        self.call(|reply| Command::AddContact {
            card: Box::new(card),
            trust,
            reply,
        })
        .await
    }

    /// Our contacts.
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn contacts(&self) -> Result<Vec<ContactInfo>, NodeError> {
        self.call(|reply| Command::Contacts { reply }).await
    }

    /// Removes a contact: its keys and sessions are forgotten (messages from
    /// it can no longer be opened). Our messages to it that are still
    /// travelling cannot be recalled; they become
    /// `Failed(ContactRemoved)`. The conversation stays in the history
    /// until [`Node::delete_conversation`]. Returns `false` if it was not a
    /// contact.
    ///
    /// # Errors
    /// [`NodeError::Engine`] if saving fails, [`NodeError::Closed`].
    pub async fn remove_contact(&self, contact: &IdentityKey) -> Result<bool, NodeError> {
        let contact = *contact;
        self.call(|reply| Command::App(AppCommand::RemoveContact { contact, reply }))
            .await
    }

    /// Sets the user's own name for a contact (`None` clears it); it is
    /// kept encrypted in the store and never sent. Returns `false` for an
    /// unknown contact.
    ///
    /// # Errors
    /// [`NodeError::InvalidArgument`] for a name over 64 bytes or with
    /// control characters, [`NodeError::Engine`] if saving fails.
    pub async fn rename_contact(
        &self,
        contact: &IdentityKey,
        nickname: Option<&str>,
    ) -> Result<bool, NodeError> {
        if let Some(name) = nickname
            && (name.len() > MAX_NICKNAME || name.chars().any(char::is_control))
        {
            return Err(NodeError::InvalidArgument(
                "a nickname has at most 64 bytes and no control characters",
            ));
        }
        let contact = *contact;
        let nickname = nickname.filter(|n| !n.is_empty()).map(str::to_owned);
        self.call(|reply| {
            Command::App(AppCommand::Rename {
                contact,
                nickname,
                reply,
            })
        })
        .await
    }

    /// Marks a contact verified, after the user compared the safety number
    /// ([`Node::safety_number`]) with theirs in person or over a channel
    /// they trust. A later key change drops it again (with
    /// [`crate::NodeEvent::KeyChanged`]). Returns `false` for an unknown
    /// contact.
    ///
    /// # Errors
    /// [`NodeError::Engine`] if saving fails, [`NodeError::Closed`].
    pub async fn mark_verified(&self, contact: &IdentityKey) -> Result<bool, NodeError> {
        let contact = *contact;
        self.call(|reply| Command::App(AppCommand::MarkVerified { contact, reply }))
            .await
    }

    /// A page of the conversation with `contact`, newest first: up to
    /// `limit` messages (at most 1000) stored before `before` (a
    /// [`StoredMessage::seq`]; `None` for the newest). Sent messages carry
    /// their status. Nothing is read from the network.
    ///
    /// The history holds what this node sent and received since it was
    /// created with [`crate::NodeBuilder::keep_history`] on (the
    /// default), encrypted at rest like everything in the store.
    ///
    /// # Errors
    /// [`NodeError::Store`] if a record does not decrypt,
    /// [`NodeError::Closed`].
    pub async fn messages(
        &self,
        contact: &IdentityKey,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, NodeError> {
        let contact = *contact;
        self.call(|reply| {
            Command::App(AppCommand::Messages {
                contact,
                before,
                limit,
                reply,
            })
        })
        .await
    }

    /// Deletes one message from the history: one we sent (`outgoing`, its
    /// status goes with it; if it still travels it is not recalled, and no
    /// status is tracked for it any more) or one we received (message IDs
    /// are chosen by their senders, so the direction says which). Returns
    /// `false` if it was not in the history.
    ///
    /// Deleted records are gone from the live store, but sled's log may
    /// keep old values until it compacts them: against someone who later
    /// obtains the passphrase, only [`Node::wipe`] is final.
    ///
    /// # Errors
    /// [`NodeError::Store`], [`NodeError::Closed`].
    pub async fn delete_message(
        &self,
        message_id: MessageId,
        outgoing: bool,
    ) -> Result<bool, NodeError> {
        self.call(|reply| {
            Command::App(AppCommand::DeleteMessage {
                message_id,
                outgoing,
                reply,
            })
        })
        .await
    }

    /// Deletes the whole conversation with `contact` from the history;
    /// returns how many messages went.
    ///
    /// # Errors
    /// [`NodeError::Store`], [`NodeError::Closed`].
    pub async fn delete_conversation(&self, contact: &IdentityKey) -> Result<usize, NodeError> {
        let contact = *contact;
        self.call(|reply| Command::App(AppCommand::DeleteConversation { contact, reply }))
            .await
    }

    /// The status of a message we sent and when it was reached (our
    /// clock, seconds); `None` for an ID this node did not send (or whose
    /// history entry was deleted). Survives restarts.
    ///
    /// # Errors
    /// [`NodeError::Engine`], [`NodeError::Closed`].
    pub async fn message_status(
        &self,
        message_id: MessageId,
    ) -> Result<Option<(MessageStatus, u64)>, NodeError> {
        self.call(|reply| Command::App(AppCommand::Status { message_id, reply }))
            .await
    }

    /// Destroys this node's keys and store, then stops it: the key file is
    /// overwritten in place and synced first (from then on the passphrase
    /// opens nothing), then removed, then the store's directory. Events
    /// stop; every later call returns [`NodeError::Closed`]. For a panic
    /// button that needs no passphrase (or a locked phone), see
    /// [`Node::wipe_store`].
    ///
    /// Outside the store, and so not wiped: a pluggable transport's state
    /// directory (it names the bridges used), bundles exported to a stick,
    /// and whatever the app keeps itself. The app removes those.
    ///
    /// # Errors
    /// [`NodeError::Store`] if the file system refused a step (then call
    /// [`Node::wipe_store`] on the directory to finish),
    /// [`NodeError::Closed`] if the node had already stopped.
    pub async fn wipe(&self) -> Result<(), NodeError> {
        let result = self.call(|reply| Command::Wipe { reply }).await;
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        result
    }

    /// Destroys the store in `dir` without its passphrase: the panic
    /// button. Works on a store no one has open, and on one a running node
    /// holds (that node keeps its keys in memory until it stops, but
    /// nothing on disk opens from the first step on). Blocking: call it
    /// from a plain thread, or `spawn_blocking`.
    ///
    /// # Errors
    /// [`NodeError::Store`]: `NotAStore` if `dir` holds no Ferry store
    /// (nothing is touched), or a file-system refusal.
    pub fn wipe_store(dir: impl AsRef<std::path::Path>) -> Result<(), NodeError> {
        ferry_store::Wipe::of_closed(dir.as_ref())?.finish()?;
        Ok(())
    }

    /// The safety number to compare with `contact` out of band.
    pub fn safety_number(&self, contact: &IdentityKey) -> SafetyNumber {
        SafetyNumber::new(&self.identity, contact)
    }

    /// Asks someone whose card we added (but who lacks ours) to become a
    /// contact: they get our card and `introduction`.
    ///
    /// # Errors
    /// [`NodeError`] if the contact is unknown or storing fails.
    pub async fn send_contact_request(
        &self,
        to: &IdentityKey,
        introduction: &str,
    ) -> Result<(), NodeError> {
        self.call(|reply| Command::ContactRequest {
            to: *to,
            introduction: introduction.to_owned(),
            reply,
        })
        .await
    }

    /// Sends `body` (at most [`MAX_MESSAGE_BODY`] bytes) to a contact.
    /// Returns once the message is durably in the outbox and the history
    /// (it survives a crash): its status is then `Queued`, and
    /// [`crate::NodeEvent::MessageStatus`] reports each step after
    /// (`Sent`, `Carried`, `Delivered`, or `Expired` / `Failed`).
    ///
    /// # Errors
    /// [`NodeError::TooLarge`], [`NodeError::OwnIdentity`],
    /// [`NodeError::Send`] with [`crate::SealError::UnknownContact`] for a
    /// key that is not a contact; on error nothing was stored or sent.
    pub async fn send(&self, to: &IdentityKey, body: &[u8]) -> Result<MessageId, NodeError> {
        self.send_with(to, body, SendOptions::default()).await
    }

    /// As [`Node::send`], with options.
    ///
    /// # Errors
    /// As [`Node::send`].
    pub async fn send_with(
        &self,
        to: &IdentityKey,
        body: &[u8],
        options: SendOptions,
    ) -> Result<MessageId, NodeError> {
        if *to == self.identity {
            return Err(NodeError::OwnIdentity);
        }
        if body.len() > MAX_MESSAGE_BODY {
            return Err(NodeError::TooLarge {
                len: body.len(),
                max: MAX_MESSAGE_BODY,
            });
        }
        self.call(|reply| Command::Send {
            to: *to,
            body: body.to_vec(),
            options,
            reply,
        })
        .await
    }

    /// Acknowledges a received message: the app has it, so it is not
    /// handed out again. Returns `false` for an unknown ID.
    ///
    /// # Errors
    /// [`NodeError`] if the store fails.
    pub async fn ack(&self, message_id: MessageId) -> Result<bool, NodeError> {
        self.call(|reply| Command::Ack { message_id, reply }).await
    }

    /// Connects to a peer at `address` (with or without `/p2p/<peer id>`)
    /// and returns its peer ID once the connection is up (encrypted and
    /// authenticated). This is how two nodes connect directly: one gives
    /// the other an address from its [`Node::listen_addrs`].
    ///
    /// # Errors
    /// [`NodeError::Dial`] if the connection failed (refused, unreachable,
    /// no transport for the address — e.g. QUIC while QUIC is off —, a
    /// different peer ID answered) or did not come up within
    /// [`DIAL_TIMEOUT`].
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, NodeError> {
        match tokio::time::timeout(
            DIAL_TIMEOUT,
            self.call(|reply| Command::Dial { address, reply }),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(NodeError::Dial("timed out".into())),
        }
    }

    /// Closes every connection to a peer.
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NodeError> {
        self.call(|reply| Command::Disconnect { peer, reply }).await
    }

    /// The addresses we listen on (with `/p2p/<peer id>` appended).
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        self.call(|reply| Command::Listeners { reply }).await
    }

    /// Peers with a live connection.
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NodeError> {
        self.call(|reply| Command::ConnectedPeers { reply }).await
    }

    /// Counters.
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn stats(&self) -> Result<NodeStats, NodeError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// Attaches a duplex byte stream the app opened (a Bluetooth L2CAP
    /// channel, a Wi-Fi Direct socket, a serial line) as a link: the node
    /// authenticates and multiplexes it like a TCP connection, and sync
    /// and gossip run over it. `label` is the app's own name for it; it
    /// comes back in [`crate::NodeEvent::LinkUp`], `LinkDown` and
    /// `LinkFailed`. The other end must be attached to a Ferry node the
    /// same way; which side dialed does not matter.
    ///
    /// # Errors
    /// [`NodeError::InvalidArgument`] for an empty or overlong label
    /// (over [`MAX_LINK_LABEL`] bytes), [`NodeError::Closed`].
    pub async fn attach_link<S>(&self, stream: S, label: &str) -> Result<LinkId, NodeError>
    where
        S: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static,
    {
        if label.is_empty() || label.len() > MAX_LINK_LABEL {
            return Err(NodeError::InvalidArgument(
                "a link label has 1 to 128 bytes",
            ));
        }
        let stream: ferry_transports::Stream = Box::new(stream);
        let label = label.to_owned();
        self.call(|reply| Command::AttachLink {
            stream,
            label,
            reply,
        })
        .await
    }

    /// The connected peers, each with its connections: address, transport
    /// (TCP, QUIC, WebSocket, a bridge's method, an attached link's
    /// label, a relay circuit) and direction.
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The bridge line clients paste to reach this node through its
    /// pluggable-transport server ([`crate::NodeBuilder::bridge_server`]),
    /// `None` without one.
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn bridge_line(&self) -> Result<Option<BridgeLine>, NodeError> {
        self.call(|reply| Command::BridgeLine { reply }).await
    }

    /// Writes the live envelopes `filter` selects to a sneakernet bundle
    /// at `path` (format `ferry.v1`, signed with a one-time key), through
    /// a temporary file and a rename.
    ///
    /// # Errors
    /// [`NodeError::Bundle`] if the file cannot be written (then no file
    /// appears at `path`), [`NodeError::Closed`].
    pub async fn export_bundle(
        &self,
        path: impl AsRef<std::path::Path>,
        filter: ExportFilter,
    ) -> Result<ExportReport, NodeError> {
        let (envelopes, own) = self
            .call(|reply| Command::ExportEnvelopes { filter, reply })
            .await?;
        let path = path.as_ref().to_path_buf();
        let now = crate::driver::unix_now();
        let report =
            tokio::task::spawn_blocking(move || crate::bundles::write(&path, &envelopes, now))
                .await
                .map_err(|e| NodeError::Network(e.to_string()))?
                .map_err(NodeError::Bundle)?;
        // Written: our messages in it have left this device.
        if !own.is_empty() {
            self.commands
                .send(Command::App(AppCommand::MarkSent { ids: own }))
                .await
                .map_err(|_| NodeError::Closed)?;
        }
        Ok(report)
    }

    /// Imports a sneakernet bundle: the whole file is checked first
    /// (magic, version, size limits, every record, digest, signature), and
    /// a bundle that fails any check imports nothing. Then each envelope
    /// is checked as if a stranger had sent it (structure, content ID,
    /// expiry, duplicates, quotas) and the valid ones are delivered to us
    /// or carried on, in durable commits of 512.
    ///
    /// # Errors
    /// [`NodeError::Bundle`] naming why the bundle was refused,
    /// [`NodeError::Closed`].
    pub async fn import_bundle(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<ImportReport, NodeError> {
        let path = path.as_ref().to_path_buf();
        let limits = self.bundle_limits;
        let bytes = tokio::task::spawn_blocking(move || crate::bundles::read(&path, limits))
            .await
            .map_err(|e| NodeError::Network(e.to_string()))?
            .map_err(NodeError::Bundle)?;
        let bundle =
            ferry_core::bundle::decode(&bytes, limits).map_err(|e| NodeError::Bundle(e.into()))?;
        // In chunks, each one durable commit: between them the node keeps
        // serving its links (a 100 000-envelope bundle is not one long
        // stall), and a crash mid-import leaves a prefix of individually
        // valid envelopes, each as good as if a peer had sent it.
        let mut summary = ImportSummary::default();
        for chunk in bundle.envelopes.chunks(IMPORT_CHUNK) {
            let envelopes: Vec<Vec<u8>> = chunk.iter().map(|e| e.to_vec()).collect();
            let part = self
                .call(|reply| Command::ImportEnvelopes { envelopes, reply })
                .await?;
            summary = summary.add(&part);
        }
        Ok(ImportReport {
            summary,
            fingerprint: crate::bundles::fingerprint(&bundle.key),
            created_at: bundle.created_at,
        })
    }

    /// The gossip score we give a peer (below −80: graylisted, its
    /// messages are ignored).
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NodeError> {
        self.call(|reply| Command::PeerScore { peer, reply }).await
    }

    /// Accepts (or stops accepting) pairing requests from peers on a direct
    /// link: open it only while the user is pairing.
    ///
    /// # Errors
    /// [`NodeError::Closed`].
    pub async fn allow_pairing(&self, open: bool) -> Result<(), NodeError> {
        self.call(|reply| Command::AllowPairing { open, reply })
            .await
    }

    /// Starts an in-person pairing (Noise XX) with a connected peer whose
    /// node has [`Node::allow_pairing`] open. Both sides then get
    /// [`crate::NodeEvent::PairingCode`].
    ///
    /// # Errors
    /// [`NodeError::UnknownPeer`] if not connected.
    pub async fn pair(&self, peer: PeerId) -> Result<(), NodeError> {
        self.call(|reply| Command::Pair { peer, reply }).await
    }

    /// Answers a [`crate::NodeEvent::PairingCode`]: `accept` if both
    /// devices show the same code. Returns the new verified contact.
    ///
    /// # Errors
    /// [`NodeError::UnknownPeer`] if no pairing with `peer` is waiting.
    pub async fn confirm_pairing(
        &self,
        peer: PeerId,
        accept: bool,
    ) -> Result<Option<IdentityKey>, NodeError> {
        self.call(|reply| Command::ConfirmPairing {
            peer,
            accept,
            reply,
        })
        .await
    }

    /// Stops the node: closes connections, lets the store finish its last
    /// commit, and waits (up to 10 s) for the network task to end. Messages
    /// in flight stay in the store for the next start.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            // A driver stuck past the deadline is aborted, so its event
            // queues close and the app's event loop ends either way.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}
