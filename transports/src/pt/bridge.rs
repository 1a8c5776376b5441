//! Bridge lines: how a client is told where a pluggable-transport server
//! is and how to speak to it.
//!
//! The format is Tor's, with the libp2p peer ID where Tor puts a relay
//! fingerprint: `obfs4 203.0.113.5:443 12D3KooW… cert=… iat-mode=0`.
//! A leading `Bridge ` (as in a torrc) is accepted, and so is a line
//! without the peer ID (the node then learns it from the handshake).

use std::{fmt, net::SocketAddr, str::FromStr};

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use thiserror::Error;

/// Why a bridge line was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BridgeLineError {
    /// The line is empty or has no address.
    #[error("a bridge line is `<transport> <ip:port> [peer-id] key=value …`")]
    Shape,
    /// The transport name is not a PT method name.
    #[error("bad transport name {0:?} (letters, digits and _ only)")]
    TransportName(String),
    /// The address is not `ip:port`.
    #[error("bad bridge address {0:?} (expected ip:port)")]
    Address(String),
    /// The word after the address is neither a peer ID nor `key=value`.
    #[error("bad bridge argument {0:?} (expected key=value or a peer ID)")]
    Argument(String),
    /// An obfs4 line lacks a valid `cert` or `iat-mode`.
    #[error("obfs4 bridge line: {0}")]
    Obfs4(&'static str),
}

/// A parsed bridge line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeLine {
    /// The PT method, e.g. `obfs4`.
    pub transport: String,
    /// Where the PT server listens.
    pub address: SocketAddr,
    /// The node behind it, if the line names it.
    pub peer: Option<PeerId>,
    /// The method's arguments, in order (`cert`, `iat-mode`, …).
    pub args: Vec<(String, String)>,
}

impl BridgeLine {
    /// The address the node dials for this bridge: the PT server's TCP
    /// address (and the peer, if known). The PT client transport claims
    /// dials to it; nothing else reaches the bridge.
    pub fn multiaddr(&self) -> Multiaddr {
        let mut address =
            Multiaddr::from(self.address.ip()).with(Protocol::Tcp(self.address.port()));
        if let Some(peer) = self.peer {
            address.push(Protocol::P2p(peer));
        }
        address
    }

    /// The arguments as the PT spec passes them through SOCKS5:
    /// `k=v;k=v`, with `\` and `;` escaped.
    pub fn socks_args(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.args.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            escape_into(&mut out, k, &['\\', ';', '=']);
            out.push('=');
            escape_into(&mut out, v, &['\\', ';']);
        }
        out
    }

    /// The value of argument `key`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn check_obfs4(&self) -> Result<(), BridgeLineError> {
        let cert = self
            .arg("cert")
            .ok_or(BridgeLineError::Obfs4("missing cert="))?;
        // The certificate is the server's 20-byte node ID and 32-byte
        // public key, in unpadded base64: 70 characters.
        let valid_cert = cert.len() == 70
            && cert
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
        if !valid_cert {
            return Err(BridgeLineError::Obfs4("cert= is not 70 base64 characters"));
        }
        match self.arg("iat-mode") {
            Some("0" | "1" | "2") => Ok(()),
            Some(_) => Err(BridgeLineError::Obfs4("iat-mode= must be 0, 1 or 2")),
            None => Err(BridgeLineError::Obfs4("missing iat-mode=")),
        }
    }
}

fn escape_into(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Whether `name` is a valid PT method name.
pub(crate) fn valid_method_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl FromStr for BridgeLine {
    type Err = BridgeLineError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let mut words = line.split_ascii_whitespace().peekable();
        if words.peek() == Some(&"Bridge") {
            words.next();
        }
        let transport = words.next().ok_or(BridgeLineError::Shape)?;
        if !valid_method_name(transport) {
            return Err(BridgeLineError::TransportName(transport.to_owned()));
        }
        let address = words.next().ok_or(BridgeLineError::Shape)?;
        let address = address
            .parse::<SocketAddr>()
            .map_err(|_| BridgeLineError::Address(address.to_owned()))?;
        let mut peer = None;
        let mut args = Vec::new();
        for (i, word) in words.enumerate() {
            match word.split_once('=') {
                Some((k, v)) if !k.is_empty() => args.push((k.to_owned(), v.to_owned())),
                Some(_) => return Err(BridgeLineError::Argument(word.to_owned())),
                None if i == 0 => {
                    peer = Some(
                        word.parse::<PeerId>()
                            .map_err(|_| BridgeLineError::Argument(word.to_owned()))?,
                    );
                }
                None => return Err(BridgeLineError::Argument(word.to_owned())),
            }
        }
        let line = Self {
            transport: transport.to_owned(),
            address,
            peer,
            args,
        };
        if line.transport == "obfs4" {
            line.check_obfs4()?;
        }
        Ok(line)
    }
}

impl fmt::Display for BridgeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.transport, self.address)?;
        if let Some(peer) = self.peer {
            write!(f, " {peer}")?;
        }
        for (k, v) in &self.args {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CERT: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn a_line_round_trips_with_and_without_the_peer() {
        let peer = PeerId::random();
        for text in [
            format!("obfs4 203.0.113.5:443 {peer} cert={CERT} iat-mode=0"),
            format!("obfs4 [2001:db8::1]:443 cert={CERT} iat-mode=1"),
        ] {
            let line: BridgeLine = text.parse().unwrap();
            assert_eq!(line.to_string(), text);
            assert_eq!(line.to_string().parse::<BridgeLine>().unwrap(), line);
        }
        let torrc: BridgeLine = format!("Bridge obfs4 1.2.3.4:9 cert={CERT} iat-mode=2")
            .parse()
            .unwrap();
        assert_eq!(torrc.address.port(), 9);
        assert_eq!(torrc.socks_args(), format!("cert={CERT};iat-mode=2"));
    }

    #[test]
    fn bad_lines_name_what_is_wrong() {
        let cases = [
            ("", BridgeLineError::Shape),
            ("obfs4", BridgeLineError::Shape),
            (
                "obf-s4 1.2.3.4:1",
                BridgeLineError::TransportName("obf-s4".into()),
            ),
            (
                "obfs4 1.2.3.4 cert=x",
                BridgeLineError::Address("1.2.3.4".into()),
            ),
            (
                "obfs4 1.2.3.4:1 iat-mode=0",
                BridgeLineError::Obfs4("missing cert="),
            ),
            (
                "obfs4 1.2.3.4:1 cert=short iat-mode=0",
                BridgeLineError::Obfs4("cert= is not 70 base64 characters"),
            ),
            (
                "x 1.2.3.4:1 notapeer",
                BridgeLineError::Argument("notapeer".into()),
            ),
            ("x 1.2.3.4:1 =v", BridgeLineError::Argument("=v".into())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<BridgeLine>().unwrap_err(), want, "{text:?}");
        }
        let bad_iat = format!("obfs4 1.2.3.4:1 cert={CERT} iat-mode=3");
        assert_eq!(
            bad_iat.parse::<BridgeLine>().unwrap_err(),
            BridgeLineError::Obfs4("iat-mode= must be 0, 1 or 2")
        );
    }

    #[test]
    fn socks_args_escape_separators() {
        let line = BridgeLine {
            transport: "x".into(),
            address: "1.2.3.4:1".parse().unwrap(),
            peer: None,
            args: vec![("a".into(), "b;c\\d".into()), ("e".into(), "f=g".into())],
        };
        assert_eq!(line.socks_args(), "a=b\\;c\\\\d;e=f=g");
    }
}
