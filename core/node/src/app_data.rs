//! What an app shows and manages: conversation history, message status,
//! contacts. The records live in the node's encrypted store (see
//! ARCHITECTURE, "Conversation history").

use ferry_core::{
    crypto::tags::ContentId,
    engine::{MessageId, MessageStatus, StoreOp},
    keys::IdentityKey,
};

use crate::{error::NodeError, node::Reply};

/// One message of a conversation, as the node keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its place in the history: pass it as `before` to
    /// [`crate::Node::messages`] to read older ones.
    pub seq: u64,
    /// The message ID (ours for sent messages, the sender's otherwise).
    pub message_id: MessageId,
    /// The contact it was sent to or received from.
    pub contact: IdentityKey,
    /// Whether we sent it.
    pub outgoing: bool,
    /// The body.
    pub body: Vec<u8>,
    /// When it was sent: our clock for ours, the sender's (self-asserted)
    /// clock for received ones. Seconds since the Unix epoch.
    pub sent_at: u64,
    /// When it reached us (our clock), for received messages.
    pub received_at: Option<u64>,
    /// For messages we sent: where it is, and since when (our clock).
    pub status: Option<(MessageStatus, u64)>,
}

impl std::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the body.
        f.debug_struct("StoredMessage")
            .field("seq", &self.seq)
            .field("message_id", &self.message_id)
            .field("outgoing", &self.outgoing)
            .field("len", &self.body.len())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The history record: `sent_at (8) || received_at (8, 0 for ours) || body`.
pub(crate) fn encode_record(sent_at: u64, received_at: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&sent_at.to_be_bytes());
    out.extend_from_slice(&received_at.to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub(crate) fn decode_record(record: &[u8]) -> Option<(u64, u64, &[u8])> {
    let (sent_at, rest) = record.split_first_chunk::<8>()?;
    let (received_at, body) = rest.split_first_chunk::<8>()?;
    Some((
        u64::from_be_bytes(*sent_at),
        u64::from_be_bytes(*received_at),
        body,
    ))
}

/// The history operation for a message we sent.
pub(crate) fn sent_record(
    to: &IdentityKey,
    message_id: MessageId,
    at: u64,
    body: &[u8],
) -> StoreOp {
    StoreOp::PutHistory {
        contact: to.to_bytes(),
        message_id,
        outgoing: true,
        record: encode_record(at, 0, body),
    }
}

/// Requests about history, status and contacts.
pub(crate) enum AppCommand {
    Messages {
        contact: IdentityKey,
        before: Option<u64>,
        limit: usize,
        reply: Reply<Vec<StoredMessage>>,
    },
    DeleteMessage {
        message_id: MessageId,
        outgoing: bool,
        reply: Reply<bool>,
    },
    DeleteConversation {
        contact: IdentityKey,
        reply: Reply<usize>,
    },
    Status {
        message_id: MessageId,
        reply: Reply<Option<(MessageStatus, u64)>>,
    },
    RemoveContact {
        contact: IdentityKey,
        reply: Reply<bool>,
    },
    Rename {
        contact: IdentityKey,
        nickname: Option<String>,
        reply: Reply<bool>,
    },
    MarkVerified {
        contact: IdentityKey,
        reply: Reply<bool>,
    },
    /// Our envelopes went into a bundle file.
    MarkSent { ids: Vec<ContentId> },
}

/// The most messages one history page returns.
pub const MAX_PAGE: usize = 1000;

impl crate::driver::Driver {
    pub(crate) fn on_app_command(&mut self, command: AppCommand) -> Result<(), NodeError> {
        match command {
            AppCommand::Messages {
                contact,
                before,
                limit,
                reply,
            } => {
                let _ = reply.send(self.messages(&contact, before, limit));
            }
            AppCommand::DeleteMessage {
                message_id,
                outgoing,
                reply,
            } => {
                let _ = reply.send(self.delete_message(message_id, outgoing));
            }
            AppCommand::DeleteConversation { contact, reply } => {
                let result = self.delete_conversation(&contact);
                let _ = reply.send(result);
            }
            AppCommand::Status { message_id, reply } => {
                let status = self
                    .engine()
                    .message_status(&message_id)
                    .map(|r| r.map(|r| (r.status, r.at)))
                    .map_err(NodeError::from);
                let _ = reply.send(status);
            }
            AppCommand::RemoveContact { contact, reply } => {
                let result = self.engine_mut().remove_contact(&contact);
                let _ = reply.send(result.map_err(NodeError::from));
                self.drain_outputs(None);
            }
            AppCommand::Rename {
                contact,
                nickname,
                reply,
            } => {
                let result = self.engine_mut().set_nickname(&contact, nickname);
                let _ = reply.send(result.map_err(NodeError::from));
            }
            AppCommand::MarkVerified { contact, reply } => {
                let result = self.engine_mut().mark_verified(&contact);
                let _ = reply.send(result.map_err(NodeError::from));
            }
            AppCommand::MarkSent { ids } => {
                let now = crate::driver::unix_now();
                for id in ids {
                    self.engine_mut().mark_sent(&id, now)?;
                }
                self.drain_outputs(None);
            }
        }
        Ok(())
    }

    fn messages(
        &self,
        contact: &IdentityKey,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, NodeError> {
        let engine = self.engine();
        let entries = engine
            .store()
            .history(&contact.to_bytes(), before, limit.min(MAX_PAGE))?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let (sent_at, received_at, body) = decode_record(&entry.record).ok_or(
                NodeError::Store(ferry_store::StoreError::Corrupted("history")),
            )?;
            let status = if entry.outgoing {
                engine
                    .message_status(&entry.message_id)?
                    .map(|r| (r.status, r.at))
            } else {
                None
            };
            out.push(StoredMessage {
                seq: entry.seq,
                message_id: entry.message_id,
                contact: *contact,
                outgoing: entry.outgoing,
                body: body.to_vec(),
                sent_at,
                received_at: (!entry.outgoing).then_some(received_at),
                status,
            });
        }
        Ok(out)
    }

    fn delete_message(&mut self, message_id: MessageId, outgoing: bool) -> Result<bool, NodeError> {
        let store = self.engine().store();
        if store.history_contact(&message_id, outgoing)?.is_none() {
            return Ok(false);
        }
        self.engine_mut()
            .commit_history(vec![StoreOp::RemoveHistory {
                message_id,
                outgoing,
            }])?;
        Ok(true)
    }

    fn delete_conversation(&mut self, contact: &IdentityKey) -> Result<usize, NodeError> {
        let mut removed = 0;
        loop {
            let page = self
                .engine()
                .store()
                .history(&contact.to_bytes(), None, MAX_PAGE)?;
            if page.is_empty() {
                return Ok(removed);
            }
            removed += page.len();
            let ops = page
                .into_iter()
                .map(|e| StoreOp::RemoveHistory {
                    message_id: e.message_id,
                    outgoing: e.outgoing,
                })
                .collect();
            self.engine_mut().commit_history(ops)?;
        }
    }
}
