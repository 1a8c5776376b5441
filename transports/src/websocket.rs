//! WebSocket and WebSocket over TLS (libp2p's transport, rustls).
//!
//! Addresses: `/ip4/…/tcp/80/ws`, `/ip4/…/tcp/443/tls/ws` (or `/wss`),
//! `/dns4/relay.example/tcp/443/tls/ws`; `/tls/sni/<name>/ws` sets the
//! name the client announces. A listener needs a [`TlsIdentity`] for
//! `/tls/ws`; a dialer trusts the web's usual roots plus the certificates
//! it is given (a self-signed relay is pinned that way).

use std::{fmt, path::Path};

use libp2p::{
    Transport,
    core::transport::Boxed,
    websocket::{self, tls},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use thiserror::Error;
use zeroize::Zeroizing;

/// Why a WebSocket transport could not be set up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WebSocketError {
    /// A certificate or key file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(String),
    /// rustls refused the key, the chain or a trust anchor.
    #[error("TLS configuration refused: {0}")]
    Tls(String),
    /// A self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// A TLS server's certificate chain and private key.
#[derive(Clone)]
pub struct TlsIdentity {
    chain: Vec<Vec<u8>>,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1), e.g. from an ACME client.
    ///
    /// # Errors
    /// If a file cannot be read or holds no usable item.
    pub fn from_pem_files(chain: &Path, key: &Path) -> Result<Self, WebSocketError> {
        let pem_err = |what, path: &Path, e: rustls_pki_types::pem::Error| WebSocketError::Pem {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let certs = CertificateDer::pem_file_iter(chain)
            .map_err(|e| pem_err("certificate", chain, e))?
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err("certificate", chain, e))?;
        if certs.is_empty() {
            return Err(WebSocketError::NoCertificate(chain.display().to_string()));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err("private key", key, e))?;
        let identity = Self {
            chain: certs,
            key: Zeroizing::new(key_der.secret_der().to_vec()),
        };
        // Refuse a mismatched or unusable pair now, not at the first dial.
        identity.tls_config(&[])?;
        Ok(identity)
    }

    /// A fresh self-signed certificate for `names` (DNS names or IP
    /// addresses): for tests, and for relays whose users pin it.
    ///
    /// # Errors
    /// If a name is not a valid subject alternative name.
    pub fn self_signed(names: &[String]) -> Result<Self, WebSocketError> {
        let certified = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| WebSocketError::SelfSigned(e.to_string()))?;
        Ok(Self {
            chain: vec![certified.cert.der().to_vec()],
            key: Zeroizing::new(certified.key_pair.serialize_der()),
        })
    }

    /// The leaf certificate (DER), for clients to pin with
    /// [`WebSocketConfig::trust`].
    pub fn certificate_der(&self) -> &[u8] {
        self.chain.first().map_or(&[], Vec::as_slice)
    }

    /// The leaf certificate and key in PEM, to save a self-signed identity.
    pub fn to_pem(&self) -> (String, Zeroizing<String>) {
        let cert = pem_encode("CERTIFICATE", self.certificate_der());
        let key = Zeroizing::new(pem_encode("PRIVATE KEY", &self.key));
        (cert, key)
    }

    fn tls_config(&self, trust: &[Vec<u8>]) -> Result<tls::Config, WebSocketError> {
        let mut builder = tls::Config::builder();
        builder
            .server(
                tls::PrivateKey::new(self.key.to_vec()),
                self.chain.iter().cloned().map(tls::Certificate::new),
            )
            .map_err(|e| WebSocketError::Tls(e.to_string()))?;
        add_trust(&mut builder, trust)?;
        Ok(builder.finish())
    }
}

fn add_trust(builder: &mut tls::Builder, trust: &[Vec<u8>]) -> Result<(), WebSocketError> {
    for cert in trust {
        builder
            .add_trust(&tls::Certificate::new(cert.clone()))
            .map_err(|e| WebSocketError::Tls(e.to_string()))?;
    }
    Ok(())
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    let body = Base64::encode_string(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The largest WebSocket frame a listener accepts. A peer's Noise layer
/// writes its buffered frames in one go, up to 128 KiB (its codec's high
/// water mark) plus one 64 KiB frame, and each write is one WebSocket
/// message: 256 KiB holds that with room. libp2p's default (256 MiB) let
/// one unauthenticated frame header make the node reserve 256 MiB.
pub const MAX_FRAME: usize = 256 * 1024;

/// WebSocket settings: the server identity for `/tls/ws` listeners and
/// the certificates a dialer trusts beyond the web's roots.
#[derive(Debug, Clone, Default)]
pub struct WebSocketConfig {
    identity: Option<TlsIdentity>,
    trust: Vec<Vec<u8>>,
}

impl WebSocketConfig {
    /// Plain WebSocket, and TLS dials to servers with a certificate from
    /// the web's roots.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `/tls/ws` listeners with `identity`.
    pub fn identity(mut self, identity: TlsIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Trusts `certificate` (DER) when dialing `/tls/ws` (a relay's
    /// self-signed certificate).
    pub fn trust(mut self, certificate: Vec<u8>) -> Self {
        self.trust.push(certificate);
        self
    }

    /// Whether `/tls/ws` listeners can be served.
    pub fn can_serve_tls(&self) -> bool {
        self.identity.is_some()
    }

    /// The transport: WebSocket over TCP, with DNS names resolved by the
    /// system resolver when one is configured (else IP addresses only).
    ///
    /// # Errors
    /// If the TLS configuration is refused.
    pub fn build(&self) -> Result<Boxed<crate::Stream>, WebSocketError> {
        let tls = match &self.identity {
            Some(identity) => identity.tls_config(&self.trust)?,
            None => {
                let mut builder = tls::Config::builder();
                add_trust(&mut builder, &self.trust)?;
                builder.finish()
            }
        };
        let boxed = match libp2p::dns::tokio::Transport::system(crate::tcp::transport()) {
            Ok(dns) => {
                let mut ws = websocket::Config::new(dns);
                ws.set_tls_config(tls).set_max_data_size(MAX_FRAME);
                ws.map(|s, _| Box::new(s) as crate::Stream).boxed()
            }
            Err(e) => {
                // Phones often have no resolv.conf; IP addresses still work.
                tracing::warn!(error = %e, "no system resolver: WebSocket dials need IP addresses");
                let mut ws = websocket::Config::new(crate::tcp::transport());
                ws.set_tls_config(tls).set_max_data_size(MAX_FRAME);
                ws.map(|s, _| Box::new(s) as crate::Stream).boxed()
            }
        };
        Ok(boxed)
    }
}
