//! The chat's state and what each key and command does. Drawing is in
//! `ui`; this module only talks to the node.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
};

use ferry_core::contact::qr;
use ferry_node::{
    ContactCard, ContactInfo, ExportFilter, IdentityKey, MAX_PAGE, MessageId, Multiaddr, Node,
    NodeError, NodeEvent, PeerId, PeerInfo, StoreError, StoredMessage, Trust,
};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// How many messages of a conversation are kept on screen.
const SHOWN: usize = 200;

/// Contact requests kept waiting at once (anyone holding our card can
/// send them).
const MAX_REQUESTS: usize = 8;

/// LAN peers remembered from mDNS (anyone on the LAN can announce).
const MAX_LAN_PEERS: usize = 64;

/// The most of one message's text drawn (a body may be 65 000 bytes).
pub(crate) const MAX_SHOWN_BODY: usize = 2_000;

/// The longest input line (a pasted contact code is under 1 100 bytes;
/// a message body is capped by the node).
const MAX_INPUT: usize = 70_000;

/// A contact as the chat shows it.
pub(crate) struct Contact {
    /// What the node knows.
    pub(crate) info: ContactInfo,
    /// Messages received and not yet seen (acknowledged to the node when
    /// the conversation is opened, so they count again after a restart
    /// until then).
    pub(crate) unread: Vec<MessageId>,
    /// Their keys changed in this session and were not verified since.
    pub(crate) keys_changed: bool,
}

impl Contact {
    /// The name to show.
    pub(crate) fn label(&self) -> String {
        match self.info.name() {
            Some(name) => clean(name, false),
            None => short_key(&self.info.identity),
        }
    }
}

/// Text from others made safe for a terminal: control characters (an
/// escape sequence could move the cursor, retitle the window, or on some
/// terminals type into the shell) and bidirectional overrides (which can
/// make text read differently from what it is) become U+FFFD. Newlines
/// are kept only where `keep_newlines` (message bodies, drawn as lines).
pub(crate) fn clean(text: &str, keep_newlines: bool) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(
                c,
                '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            );
            if (c.is_control() && !(keep_newlines && c == '\n')) || bidi {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Whether a peer's address is on a local network (private IPv4,
/// unique-local or link-local IPv6): a LAN peer, whether mDNS found it
/// or someone typed its address.
pub(crate) fn on_lan(address: &Multiaddr) -> bool {
    use ferry_node::multiaddr::Protocol;
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_private() || ip.is_link_local(),
        Some(Protocol::Ip6(ip)) => {
            let first = ip.segments().first().copied().unwrap_or(0);
            first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
        _ => false,
    }
}

/// The first characters of a key, for a contact with no name.
pub(crate) fn short_key(key: &IdentityKey) -> String {
    let hex = key.to_hex();
    format!("key {}", hex.get(..8).unwrap_or(&hex))
}

/// A peer's ID shortened for the panel.
pub(crate) fn short_peer(peer: &PeerId) -> String {
    let s = peer.to_string();
    let tail = s.len().saturating_sub(6);
    format!("…{}", s.get(tail..).unwrap_or(&s))
}

/// A full-screen panel over the chat.
pub(crate) enum Overlay {
    /// The key and command list.
    Help,
    /// Our contact code, as text.
    Code(String),
    /// Our contact code as a QR code.
    Qr(String),
    /// A contact's safety number; `y` marks them verified.
    Safety {
        /// The contact.
        contact: IdentityKey,
        /// Their name.
        name: String,
        /// The number both sides compare.
        number: String,
    },
    /// Asks for `WIPE` before destroying everything.
    ConfirmWipe,
    /// Asks before removing a contact.
    ConfirmRemove(IdentityKey, String),
}

/// How the status line is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    /// Information.
    Info,
    /// Something the user did failed; nothing changed.
    Error,
    /// A safety warning.
    Warning,
}

/// What the main loop should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep going.
    Continue,
    /// Leave (node shutdown follows).
    Quit,
    /// The keys were destroyed: leave without touching the node again,
    /// saying what was left, if anything.
    Wiped(Option<String>),
    /// A wipe failed and the node stopped: leave with this error.
    WipeFailed(String),
}

/// The chat.
pub(crate) struct App {
    pub(crate) node: Node,
    /// Where our data lives (removed whole by a wipe).
    pub(crate) data_dir: PathBuf,
    /// The ways out, for the title bar.
    pub(crate) ways: String,
    pub(crate) contacts: Vec<Contact>,
    pub(crate) selected: usize,
    /// The selected conversation, oldest first.
    pub(crate) conversation: Vec<StoredMessage>,
    /// Lines scrolled up from the newest message.
    pub(crate) scroll: u16,
    pub(crate) peers: Vec<PeerInfo>,
    /// Peers mDNS found on the LAN.
    pub(crate) lan: HashMap<PeerId, Multiaddr>,
    /// Sealed envelopes this device holds: our messages not yet
    /// delivered, our receipts, and what it carries for others.
    pub(crate) carrying: usize,
    pub(crate) input: String,
    pub(crate) status: (Tone, String),
    pub(crate) overlay: Option<Overlay>,
    /// Contact requests waiting for `/accept` or `/reject`, oldest
    /// first: (card, name with a key prefix, whether keys changed).
    pub(crate) requests: VecDeque<(ContactCard, String, bool)>,
    /// Requests not kept because the queue was full.
    pub(crate) requests_dropped: u64,
    /// Received message IDs seen in this session (redeliveries after a
    /// restart or a lag are not counted twice).
    seen: HashSet<MessageId>,
}

/// One line for an error: no newlines, no debug dumps.
pub(crate) fn one_line(e: &impl std::fmt::Display) -> String {
    clean(&e.to_string().replace(['\n', '\r'], " "), false)
}

fn node_error(e: &NodeError) -> String {
    match e {
        NodeError::InvalidCode(c) => format!("not added: {}", one_line(c)),
        NodeError::OwnIdentity => "that is your own code".into(),
        NodeError::TooLarge { len, max } => {
            format!("not sent: the message is {len} bytes, the limit is {max}")
        }
        NodeError::Store(StoreError::WrongPassphrase) => "wrong passphrase".into(),
        other => one_line(other),
    }
}

impl App {
    /// The chat over a started node.
    pub(crate) fn new(node: Node, data_dir: PathBuf, ways: String) -> Self {
        Self {
            node,
            data_dir,
            ways,
            contacts: Vec::new(),
            selected: 0,
            conversation: Vec::new(),
            scroll: 0,
            peers: Vec::new(),
            lan: HashMap::new(),
            carrying: 0,
            input: String::new(),
            status: (
                Tone::Info,
                "Welcome. /code shows your contact code, /add <code> adds a contact, /help lists all."
                    .into(),
            ),
            overlay: None,
            requests: VecDeque::new(),
            requests_dropped: 0,
            seen: HashSet::new(),
        }
    }

    /// Sets the status line (cleaned: it may quote others' text).
    fn say(&mut self, tone: Tone, text: impl AsRef<str>) {
        self.status = (tone, clean(text.as_ref(), false));
    }

    fn info(&mut self, text: impl AsRef<str>) {
        self.say(Tone::Info, text);
    }

    fn error(&mut self, text: impl AsRef<str>) {
        self.say(Tone::Error, text);
    }

    /// The banner while any contact's keys changed in this session and
    /// were not verified since: every such contact by name.
    pub(crate) fn warning(&self) -> Option<String> {
        let names: Vec<String> = self
            .contacts
            .iter()
            .filter(|c| c.keys_changed)
            .map(Contact::label)
            .collect();
        (!names.is_empty()).then(|| {
            format!(
                "WARNING: keys changed for {}. A new device, or someone in the middle: compare \
                 safety numbers again (/verify) before trusting them.",
                names.join(", ")
            )
        })
    }

    /// The selected contact, if any.
    pub(crate) fn current(&self) -> Option<&Contact> {
        self.contacts.get(self.selected)
    }

    /// Reloads contacts (keeping unread counts and the selection).
    pub(crate) async fn refresh_contacts(&mut self) {
        let selected = self.current().map(|c| c.info.identity);
        match self.node.contacts().await {
            Ok(list) => {
                let mut old: HashMap<IdentityKey, Contact> = self
                    .contacts
                    .drain(..)
                    .map(|c| (c.info.identity, c))
                    .collect();
                self.contacts = list
                    .into_iter()
                    .map(|info| match old.remove(&info.identity) {
                        Some(mut c) => {
                            c.info = info;
                            c
                        }
                        None => Contact {
                            info,
                            unread: Vec::new(),
                            keys_changed: false,
                        },
                    })
                    .collect();
                self.contacts
                    .sort_by_key(|c| (c.label().to_lowercase(), c.info.identity.to_hex()));
                self.selected = selected
                    .and_then(|s| self.contacts.iter().position(|c| c.info.identity == s))
                    .unwrap_or(0)
                    .min(self.contacts.len().saturating_sub(1));
            }
            Err(e) => self.error(node_error(&e)),
        }
    }

    /// Reloads the selected conversation and marks it read.
    pub(crate) async fn refresh_conversation(&mut self) {
        let Some(contact) = self.current().map(|c| c.info.identity) else {
            self.conversation.clear();
            return;
        };
        match self
            .node
            .messages(&contact, None, SHOWN.min(MAX_PAGE))
            .await
        {
            Ok(mut page) => {
                page.reverse();
                self.conversation = page;
            }
            Err(e) => self.error(node_error(&e)),
        }
        self.mark_read().await;
    }

    /// Acknowledges the selected conversation's unread messages.
    async fn mark_read(&mut self) {
        let unread = match self.contacts.get_mut(self.selected) {
            Some(c) => std::mem::take(&mut c.unread),
            None => return,
        };
        for id in unread {
            if let Err(e) = self.node.ack(id).await {
                self.error(node_error(&e));
            }
        }
    }

    /// Peers and what we carry (called every couple of seconds).
    pub(crate) async fn refresh_peers(&mut self) {
        if let Ok(peers) = self.node.peers().await {
            self.peers = peers;
        }
        if let Ok(stats) = self.node.stats().await {
            self.carrying = stats.held_envelopes;
        }
    }

    async fn select(&mut self, index: usize) {
        if index < self.contacts.len() && index != self.selected {
            self.selected = index;
            self.scroll = 0;
            self.refresh_conversation().await;
        }
    }

    /// A node event.
    pub(crate) async fn on_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Message(message) => {
                let first_time = self.seen.insert(message.message_id);
                let from = message.from;
                let selected = self.current().map(|c| c.info.identity) == Some(from);
                if selected {
                    if let Err(e) = self.node.ack(message.message_id).await {
                        self.error(node_error(&e));
                    }
                    self.refresh_conversation().await;
                } else if first_time {
                    if !self.contacts.iter().any(|c| c.info.identity == from) {
                        self.refresh_contacts().await;
                    }
                    if let Some(c) = self.contacts.iter_mut().find(|c| c.info.identity == from) {
                        c.unread.push(message.message_id);
                    }
                }
            }
            NodeEvent::MessageStatus { .. } => {
                self.refresh_conversation().await;
                self.refresh_peers().await;
            }
            NodeEvent::KeyChanged {
                contact,
                was_verified,
            } => {
                self.refresh_contacts().await;
                let name = match self
                    .contacts
                    .iter_mut()
                    .find(|c| c.info.identity == contact)
                {
                    Some(c) => {
                        c.keys_changed = true;
                        c.label()
                    }
                    None => short_key(&contact),
                };
                let was = if was_verified { " (was verified)" } else { "" };
                let text = format!(
                    "WARNING: {name}'s keys changed{was}. A new device, or someone in the middle: \
                     compare safety numbers again (/verify) before trusting them."
                );
                self.say(Tone::Warning, text);
            }
            NodeEvent::ContactRequest {
                card,
                introduction,
                keys_changed,
                ..
            } => {
                let who = format!(
                    "{} (key {})",
                    card.display_name()
                        .map_or_else(|| "someone".to_string(), |n| clean(n, false)),
                    short_key(card.identity_key()).trim_start_matches("key ")
                );
                if self.requests.len() >= MAX_REQUESTS {
                    self.requests_dropped += 1;
                    self.say(
                        Tone::Warning,
                        format!(
                            "{} contact request(s) not kept: {MAX_REQUESTS} are waiting already \
                             (/accept or /reject them)",
                            self.requests_dropped
                        ),
                    );
                    return;
                }
                let intro: String = clean(&introduction, false).chars().take(80).collect();
                self.requests
                    .push_back((*card, format!("{who} (\"{intro}\")"), keys_changed));
                self.announce_request();
            }
            NodeEvent::Paired { .. } => self.refresh_contacts().await,
            NodeEvent::PeerDiscovered { peer, address }
                if self.lan.len() < MAX_LAN_PEERS || self.lan.contains_key(&peer) =>
            {
                self.lan.insert(peer, address);
            }
            NodeEvent::PeerUp { .. } | NodeEvent::PeerDown { .. } => self.refresh_peers().await,
            NodeEvent::SyncProgress { .. } => self.refresh_peers().await,
            NodeEvent::PluggableTransport(event) => {
                self.info(format!("obfs4: {}", one_line(&format!("{event:?}"))));
            }
            NodeEvent::Lagged { missed } => {
                self.info(format!("{missed} events were late; reloading"));
                self.refresh_contacts().await;
                self.refresh_conversation().await;
            }
            _ => {}
        }
    }

    /// A key press.
    pub(crate) async fn on_key(&mut self, key: KeyEvent) -> Next {
        if key.kind == KeyEventKind::Release {
            return Next::Continue;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'q')) {
            return Next::Quit;
        }
        if self.overlay.is_some() {
            return self.on_overlay_key(key).await;
        }
        match key.code {
            KeyCode::Enter => {
                let line = std::mem::take(&mut self.input);
                return self.submit(line.trim()).await;
            }
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Esc => self.input.clear(),
            KeyCode::Up => self.select(self.selected.saturating_sub(1)).await,
            KeyCode::Down => self.select(self.selected + 1).await,
            // Clamped when drawn, to what the conversation holds.
            KeyCode::PageUp => self.scroll = self.scroll.saturating_add(5).min(10_000),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(5),
            KeyCode::Char('u') if ctrl => self.input.clear(),
            KeyCode::Char(c) if !ctrl && self.input.len() < MAX_INPUT => self.input.push(c),
            _ => {}
        }
        Next::Continue
    }

    /// Pasted text goes into the input line as typed text (newlines
    /// become spaces: a paste never presses Enter), never into a dialog.
    pub(crate) fn paste(&mut self, text: &str) {
        if self.overlay.is_some() {
            return;
        }
        let text = clean(&text.replace("\r\n", " ").replace(['\n', '\r'], " "), false);
        let room = MAX_INPUT.saturating_sub(self.input.len());
        self.input.extend(text.chars().scan(0, |used, c| {
            *used += c.len_utf8();
            (*used <= room).then_some(c)
        }));
    }

    async fn on_overlay_key(&mut self, key: KeyEvent) -> Next {
        match self.overlay.take() {
            Some(Overlay::ConfirmWipe) => match key.code {
                KeyCode::Enter => {
                    let typed = std::mem::take(&mut self.input);
                    if typed == "WIPE" {
                        return self.wipe().await;
                    }
                    self.error("not wiped (type WIPE in capitals to confirm)");
                }
                KeyCode::Esc => {
                    self.input.clear();
                    self.info("not wiped");
                }
                KeyCode::Backspace => {
                    self.input.pop();
                    self.overlay = Some(Overlay::ConfirmWipe);
                }
                KeyCode::Char(c) => {
                    if self.input.len() < 16 {
                        self.input.push(c);
                    }
                    self.overlay = Some(Overlay::ConfirmWipe);
                }
                _ => self.overlay = Some(Overlay::ConfirmWipe),
            },
            Some(Overlay::Safety {
                contact,
                name,
                number,
            }) => match key.code {
                KeyCode::Char('y' | 'Y') => match self.node.mark_verified(&contact).await {
                    Ok(true) => {
                        if let Some(c) = self
                            .contacts
                            .iter_mut()
                            .find(|c| c.info.identity == contact)
                        {
                            c.keys_changed = false;
                        }
                        self.refresh_contacts().await;
                        self.info(format!("{name} is verified"));
                    }
                    Ok(false) => self.error("not a contact any more"),
                    Err(e) => self.error(node_error(&e)),
                },
                KeyCode::Char('n' | 'N') => self.say(
                    Tone::Warning,
                    format!(
                        "{name} NOT verified: the numbers differ, so someone may be in the middle. \
                         Exchange codes again in person."
                    ),
                ),
                KeyCode::Esc | KeyCode::Char('q') => self.info("not verified"),
                _ => {
                    self.overlay = Some(Overlay::Safety {
                        contact,
                        name,
                        number,
                    })
                }
            },
            Some(Overlay::ConfirmRemove(contact, name)) => match key.code {
                KeyCode::Char('y' | 'Y') => match self.node.remove_contact(&contact).await {
                    Ok(_) => {
                        self.refresh_contacts().await;
                        self.refresh_conversation().await;
                        self.info(format!("{name} removed"));
                    }
                    Err(e) => self.error(node_error(&e)),
                },
                _ => self.info(format!("{name} kept")),
            },
            // Help, code, QR: any key closes.
            _ => {}
        }
        Next::Continue
    }

    /// A typed line: a command or a message to the selected contact.
    async fn submit(&mut self, line: &str) -> Next {
        if line.is_empty() {
            return Next::Continue;
        }
        let Some(command) = line.strip_prefix('/') else {
            self.send(line).await;
            return Next::Continue;
        };
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .map_or((command, ""), |(n, a)| (n, a.trim()));
        match name {
            "help" | "h" | "?" => self.overlay = Some(Overlay::Help),
            "quit" | "q" | "exit" => return Next::Quit,
            "code" => self.show_code(false).await,
            "qr" => self.show_code(true).await,
            "add" => self.add(arg).await,
            "verify" => self.verify(),
            "name" | "rename" => self.rename(arg).await,
            "remove" => match self.current() {
                Some(c) => {
                    self.overlay = Some(Overlay::ConfirmRemove(c.info.identity, c.label()));
                }
                None => self.error("no contact selected"),
            },
            "accept" => self.accept().await,
            "reject" => match self.requests.pop_front() {
                Some((_, who, _)) => {
                    self.info(format!("request from {who} ignored"));
                    self.announce_request();
                }
                None => self.error("no contact request is waiting"),
            },
            "export" => self.export(arg).await,
            "import" => self.import(arg).await,
            "dial" | "connect" => self.dial(arg).await,
            "peers" => self.show_peers(),
            "wipe" => {
                self.input.clear();
                self.overlay = Some(Overlay::ConfirmWipe);
            }
            #[cfg(debug_assertions)]
            "__panic" => panic_for_tests(),
            other => self.error(format!("unknown command /{other} (see /help)")),
        }
        Next::Continue
    }

    async fn send(&mut self, text: &str) {
        let Some(contact) = self.current().map(|c| c.info.identity) else {
            self.error("not sent: add a contact first (/add <their code>)");
            self.input = text.to_string();
            return;
        };
        match self.node.send(&contact, text.as_bytes()).await {
            Ok(_) => {
                self.scroll = 0;
                self.refresh_conversation().await;
                self.refresh_peers().await;
            }
            Err(e) => {
                // Keep what was typed: nothing was sent.
                self.input = text.to_string();
                self.error(node_error(&e));
            }
        }
    }

    async fn show_code(&mut self, as_qr: bool) {
        match self.node.contact_code().await {
            Ok(code) if as_qr => match qr::to_terminal(&code) {
                Ok(art) => self.overlay = Some(Overlay::Qr(art)),
                Err(e) => self.error(one_line(&e)),
            },
            Ok(code) => self.overlay = Some(Overlay::Code(code)),
            Err(e) => self.error(node_error(&e)),
        }
    }

    async fn add(&mut self, code: &str) {
        if code.is_empty() {
            self.error("usage: /add <contact code> (paste the code they showed you)");
            return;
        }
        match self.node.add_contact(code).await {
            Ok(identity) => {
                self.refresh_contacts().await;
                if let Some(i) = self
                    .contacts
                    .iter()
                    .position(|c| c.info.identity == identity)
                {
                    self.selected = i;
                    self.scroll = 0;
                    self.refresh_conversation().await;
                }
                let name = self.current().map(Contact::label).unwrap_or_default();
                self.info(format!(
                    "added {name}. Compare safety numbers (/verify) in person or on a call."
                ));
            }
            Err(e) => self.error(node_error(&e)),
        }
    }

    fn verify(&mut self) {
        let Some(c) = self.current() else {
            self.error("no contact selected");
            return;
        };
        let number = self.node.safety_number(&c.info.identity).to_string();
        self.overlay = Some(Overlay::Safety {
            contact: c.info.identity,
            name: c.label(),
            number,
        });
    }

    async fn rename(&mut self, name: &str) {
        let Some(contact) = self.current().map(|c| c.info.identity) else {
            self.error("no contact selected");
            return;
        };
        let nickname = (!name.is_empty()).then_some(name);
        match self.node.rename_contact(&contact, nickname).await {
            Ok(_) => {
                self.refresh_contacts().await;
                self.info("renamed");
            }
            Err(e) => self.error(node_error(&e)),
        }
    }

    /// Shows the oldest waiting request, warning first if it is a key
    /// change.
    fn announce_request(&mut self) {
        let Some((_, who, keys_changed)) = self.requests.front() else {
            return;
        };
        let more = match self.requests.len() {
            1 => String::new(),
            n => format!(" ({} more waiting)", n - 1),
        };
        let text = if *keys_changed {
            format!(
                "WARNING: KEY CHANGE. {who} asks to be a contact with keys other than the ones \
                 you have: /accept only after comparing safety numbers, else /reject.{more}"
            )
        } else {
            format!("{who} asks to be a contact: /accept or /reject.{more}")
        };
        let tone = if *keys_changed {
            Tone::Warning
        } else {
            Tone::Info
        };
        self.say(tone, text);
    }

    async fn accept(&mut self) {
        let Some((card, who, _)) = self.requests.pop_front() else {
            self.error("no contact request is waiting");
            return;
        };
        match self.node.add_contact_card(card, Trust::Unverified).await {
            Ok(_) => {
                self.refresh_contacts().await;
                self.info(format!("added {who}. Compare safety numbers (/verify)."));
            }
            Err(e) => self.error(node_error(&e)),
        }
    }

    async fn export(&mut self, path: &str) {
        if path.is_empty() {
            self.error("usage: /export <file> (e.g. on a USB stick)");
            return;
        }
        let replaced = if std::path::Path::new(path).exists() {
            " (it replaced the file that was there)"
        } else {
            ""
        };
        match self.node.export_bundle(path, ExportFilter::All).await {
            Ok(report) => self.info(format!(
                "wrote {} envelope(s), {} bytes, to {path}{replaced} (fingerprint {}). \
                 Everything is sealed: whoever carries it cannot read it.",
                report.envelopes, report.bytes, report.fingerprint
            )),
            Err(e) => self.error(format!("not exported to {path}: {}", node_error(&e))),
        }
    }

    async fn import(&mut self, path: &str) {
        if path.is_empty() {
            self.error("usage: /import <file>");
            return;
        }
        match self.node.import_bundle(path).await {
            Ok(report) => {
                let s = report.summary;
                let refused = s.invalid + s.over_quota + s.declined;
                self.info(format!(
                    "imported {path}: {} envelope(s): {} for you, {} to carry on, {} already here, \
                     {} expired, {refused} refused (fingerprint {})",
                    s.total, s.for_us, s.imported, s.duplicate, s.expired, report.fingerprint
                ));
                self.refresh_contacts().await;
                self.refresh_conversation().await;
            }
            Err(e) => self.error(format!("not imported from {path}: {}", node_error(&e))),
        }
    }

    async fn dial(&mut self, address: &str) {
        let address: Multiaddr = match address.parse() {
            Ok(a) => a,
            Err(_) => {
                self.error("usage: /dial <multiaddr> (e.g. /ip4/192.168.1.5/tcp/4001)");
                return;
            }
        };
        self.info(format!("connecting to {address}…"));
        match self.node.dial(address).await {
            Ok(peer) => {
                self.refresh_peers().await;
                self.info(format!("connected to {}", short_peer(&peer)));
            }
            Err(e) => self.error(node_error(&e)),
        }
    }

    fn show_peers(&mut self) {
        let text = if self.peers.is_empty() {
            "no peers connected".to_string()
        } else {
            let list: Vec<String> = self
                .peers
                .iter()
                .map(|p| format!("{} via {}", p.peer, self.route_name(p)))
                .collect();
            list.join("; ")
        };
        self.info(text);
    }

    /// How a peer is connected, in a word or two.
    pub(crate) fn route_name(&self, peer: &PeerInfo) -> String {
        let mut names: Vec<String> = peer
            .routes
            .iter()
            .map(|r| match (&r.link_label, &r.transport) {
                (Some(label), _) => label.clone(),
                (None, Some(kind)) => kind.to_string(),
                (None, None) => "?".into(),
            })
            .collect();
        names.dedup();
        let mut name = names.join("+");
        if self.lan.contains_key(&peer.peer) || peer.routes.iter().any(|r| on_lan(&r.address)) {
            name.push_str(" lan");
        }
        name
    }

    /// Destroys the keys and the store, then the rest of the data
    /// directory.
    async fn wipe(&mut self) -> Next {
        let store = self.data_dir.join(crate::wipe::STORE);
        if let Err(e) = self.node.wipe().await {
            // The node stops even when its wipe fails: finish from the
            // outside, as `--panic-wipe` does.
            let outside = tokio::task::spawn_blocking(move || Node::wipe_store(&store)).await;
            match outside {
                Ok(Ok(())) => {}
                Ok(Err(again)) => {
                    return Next::WipeFailed(format!(
                        "NOT wiped: {}; then {}. Run ferry-chat --panic-wipe.",
                        node_error(&e),
                        node_error(&again)
                    ));
                }
                Err(join) => {
                    return Next::WipeFailed(format!(
                        "NOT wiped: {}; {}. Run ferry-chat --panic-wipe.",
                        node_error(&e),
                        one_line(&join)
                    ));
                }
            }
        }
        match crate::wipe::remove_ours(&self.data_dir) {
            Ok(left) => Next::Wiped(left),
            Err(e) => Next::Wiped(Some(format!(
                "some of the chat's files remain: {}",
                one_line(&e)
            ))),
        }
    }
}

/// Lets the tests check that a panic restores the terminal and prints one
/// line (debug builds only).
#[cfg(debug_assertions)]
#[allow(clippy::panic)]
fn panic_for_tests() -> ! {
    panic!("requested by /__panic")
}
