//! `FerryConfig`: what a node starts with, set one field at a time.

use std::{ffi::c_char, path::PathBuf, sync::Mutex, time::Duration};

use ferry_node::{
    KdfParams, Multiaddr, Node, NodeBuilder,
    transports::pt::{BridgeLine, PtClientConfig},
};

use crate::boundary::{self, Failure, FerryResult, LastError, guard};

/// What a node is configured with (opaque). Made by `ferry_config_new`,
/// freed by `ferry_config_free`; `ferry_node_start` reads it and leaves it
/// to the app, which may free it at once.
#[derive(Debug)]
pub struct FerryConfig {
    pub(crate) inner: Mutex<Settings>,
    pub(crate) errors: LastError,
}

#[derive(Debug, Default)]
pub(crate) struct Settings {
    storage: Option<(PathBuf, String)>,
    kdf: Option<KdfParams>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    quic: Option<bool>,
    mdns: Option<bool>,
    relay: bool,
    display_name: Option<String>,
    bridges: Vec<BridgeLine>,
    pt: Option<(PathBuf, PathBuf)>,
    resync_secs: Option<u64>,
    delivery_delays: Option<((u64, u64), (u64, u64))>,
    keep_history: Option<bool>,
}

impl Settings {
    pub(crate) fn builder(&self) -> Result<NodeBuilder, Failure> {
        let Some((dir, passphrase)) = &self.storage else {
            return Err(Failure::new(
                FerryResult::Config,
                "no storage: call ferry_config_set_storage",
            ));
        };
        let mut b = Node::builder().storage(dir, passphrase.as_bytes());
        if let Some(kdf) = self.kdf {
            b = b.kdf(kdf);
        }
        for address in &self.listen {
            b = b.listen_on(address.clone());
        }
        for address in &self.bootstrap {
            b = b.bootstrap(address.clone());
        }
        if let Some(on) = self.quic {
            b = b.quic(on);
        }
        if let Some(on) = self.mdns {
            b = b.mdns(on);
        }
        if self.relay {
            b = b.relay();
        }
        if let Some(name) = &self.display_name {
            b = b.display_name(name.clone());
        }
        if !self.bridges.is_empty() {
            let Some((binary, state_dir)) = &self.pt else {
                return Err(Failure::new(
                    FerryResult::Config,
                    "bridges need ferry_config_set_pluggable_transport",
                ));
            };
            b = b.bridges(PtClientConfig {
                binary: binary.clone(),
                state_dir: state_dir.clone(),
                bridges: self.bridges.clone(),
            });
        }
        if let Some(secs) = self.resync_secs {
            b = b.resync_interval(Duration::from_secs(secs));
        }
        if let Some((proofs, receipts)) = self.delivery_delays {
            b = b.delivery_delays(proofs, receipts);
        }
        if let Some(keep) = self.keep_history {
            b = b.keep_history(keep);
        }
        Ok(b)
    }
}

/// Runs `f` on the settings of a live config handle.
///
/// # Safety
/// `config` is NULL or a live handle from `ferry_config_new`.
unsafe fn with(
    config: *const FerryConfig,
    f: impl FnOnce(&mut Settings) -> Result<(), Failure>,
) -> FerryResult {
    // SAFETY: NULL or live, as the caller promises.
    let Some(config) = (unsafe { config.as_ref() }) else {
        return FerryResult::NullArgument;
    };
    guard(Some(&config.errors), || {
        let mut settings = config
            .inner
            .lock()
            .map_err(|_| Failure::new(FerryResult::Internal, "config lock poisoned"))?;
        f(&mut settings)
    })
}

/// Makes an empty configuration into `*out`: no storage yet (required),
/// TCP on, QUIC on, mDNS off (LAN discovery announces the device; turn it
/// on with `ferry_config_set_transports`), no listen address (the node
/// then only dials).
///
/// # Safety
/// `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_new(out: *mut *mut FerryConfig) -> FerryResult {
    guard(None, || {
        // SAFETY: NULL (refused) or valid for a write.
        unsafe { boundary::need_ptr(out, "out") }?;
        let config = Box::new(FerryConfig {
            inner: Mutex::new(Settings::default()),
            errors: LastError::default(),
        });
        // SAFETY: NULL (refused) or valid for a write.
        unsafe { boundary::write_out(out, Box::into_raw(config), "out") }
    })
}

/// Frees a configuration and sets `*config` to NULL; NULL and a pointer to
/// NULL are ignored.
///
/// # Safety
/// `config` is NULL or points to NULL or to a live handle from
/// `ferry_config_new` that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_free(config: *mut *mut FerryConfig) {
    let _ = guard(None, || {
        if config.is_null() {
            return Ok(());
        }
        // SAFETY: not NULL; points to the app's handle pointer.
        let inner = unsafe { config.replace(std::ptr::null_mut()) };
        if !inner.is_null() {
            // SAFETY: made by `Box::into_raw` in `ferry_config_new`; the
            // app's pointer is NULL now, so this runs once per handle.
            drop(unsafe { Box::from_raw(inner) });
        }
        Ok(())
    });
}

/// The configuration's last error message (free with
/// `ferry_string_free`), or NULL if the last call succeeded.
///
/// # Safety
/// `config` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_last_error(config: *const FerryConfig) -> *mut c_char {
    boundary::guard_value(std::ptr::null_mut(), || {
        // SAFETY: NULL or live, as the caller promises.
        match unsafe { config.as_ref() } {
            Some(config) => config.errors.copy(),
            None => std::ptr::null_mut(),
        }
    })
}

/// Where the encrypted store lives (a directory; created if missing) and
/// the passphrase that unlocks it. Required.
///
/// # Safety
/// `config` is NULL or live; `dir` and `passphrase` are NULL or
/// NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_set_storage(
    config: *const FerryConfig,
    dir: *const c_char,
    passphrase: *const c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with(config, |s| {
            let dir = boundary::read_str(dir, "dir")?;
            let passphrase = boundary::read_str(passphrase, "passphrase")?;
            if dir.is_empty() {
                return Err(Failure::invalid("dir is empty"));
            }
            s.storage = Some((PathBuf::from(dir), passphrase.to_owned()));
            Ok(())
        })
    }
}

/// The cost of unlocking with the passphrase (Argon2id): memory in KiB,
/// iterations, lanes. The default (64 MiB, 3, 1) takes 0.2–0.5 s on a
/// phone; lower costs make a stolen store cheaper to brute-force.
///
/// # Safety
/// `config` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_set_kdf(
    config: *const FerryConfig,
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with(config, |s| {
            if memory_kib < 8 * lanes.max(1) || iterations == 0 || lanes == 0 {
                return Err(Failure::invalid(
                    "memory_kib at least 8 per lane; iterations and lanes at least 1",
                ));
            }
            s.kdf = Some(KdfParams {
                memory_kib,
                iterations,
                parallelism: lanes,
            });
            Ok(())
        })
    }
}

/// Adds a listen address (a multiaddr such as `/ip4/0.0.0.0/tcp/0`).
///
/// # Safety
/// `config` is NULL or live; `address` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_add_listen_address(
    config: *const FerryConfig,
    address: *const c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with(config, |s| {
            let address = boundary::read_str(address, "address")?;
            let address: Multiaddr = address
                .parse()
                .map_err(|e| Failure::invalid(format!("address: {e}")))?;
            s.listen.push(address);
            Ok(())
        })
    }
}

/// Adds a bootstrap peer (a multiaddr ending in `/p2p/<peer id>`): dialled
/// at start and whenever the connection is lost.
///
/// # Safety
/// `config` is NULL or live; `address` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_add_bootstrap(
    config: *const FerryConfig,
    address: *const c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with(config, |s| {
            let address = boundary::read_str(address, "address")?;
            let address: Multiaddr = address
                .parse()
                .map_err(|e| Failure::invalid(format!("address: {e}")))?;
            s.bootstrap.push(address);
            Ok(())
        })
    }
}

/// Adds a bridge line (Tor's format, e.g. `obfs4 1.2.3.4:443 <peer id>
/// cert=… iat-mode=0`); bridges need
/// `ferry_config_set_pluggable_transport`.
///
/// # Safety
/// `config` is NULL or live; `line` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_add_bridge(
    config: *const FerryConfig,
    line: *const c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with(config, |s| {
            let line = boundary::read_str(line, "line")?;
            let bridge: BridgeLine = line
                .parse()
                .map_err(|e| Failure::invalid(format!("bridge line: {e}")))?;
            s.bridges.push(bridge);
            Ok(())
        })
    }
}

/// The pluggable transport (e.g. an `obfs4proxy` binary bundled with the
/// app) and a private directory for its state.
///
/// # Safety
/// `config` is NULL or live; `binary` and `state_dir` are NULL or
/// NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_set_pluggable_transport(
    config: *const FerryConfig,
    binary: *const c_char,
    state_dir: *const c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with(config, |s| {
            let binary = boundary::read_str(binary, "binary")?;
            let state_dir = boundary::read_str(state_dir, "state_dir")?;
            s.pt = Some((PathBuf::from(binary), PathBuf::from(state_dir)));
            Ok(())
        })
    }
}

/// Turns QUIC and LAN discovery by mDNS on (non-zero) or off (0).
///
/// # Safety
/// `config` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_set_transports(
    config: *const FerryConfig,
    quic: u32,
    mdns: u32,
) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with(config, |s| {
            s.quic = Some(quic != 0);
            s.mdns = Some(mdns != 0);
            Ok(())
        })
    }
}

/// Makes the node a relay (an always-on store-and-forward node with the
/// relay's connection limits and the relay v2 server).
///
/// # Safety
/// `config` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_set_relay(config: *const FerryConfig) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with(config, |s| {
            s.relay = true;
            Ok(())
        })
    }
}

/// The display name on the contact codes this node issues.
///
/// # Safety
/// `config` is NULL or live; `name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_set_display_name(
    config: *const FerryConfig,
    name: *const c_char,
) -> FerryResult {
    // SAFETY: forwarded caller promises.
    unsafe {
        with(config, |s| {
            s.display_name = Some(boundary::read_str(name, "name")?.to_owned());
            Ok(())
        })
    }
}

/// Whether the node keeps the conversation history: non-zero (the
/// default) or 0.
///
/// # Safety
/// `config` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_set_keep_history(
    config: *const FerryConfig,
    keep: u32,
) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with(config, |s| {
            s.keep_history = Some(keep != 0);
            Ok(())
        })
    }
}

/// Timing for tests and demos: reconciliation every `resync_secs` seconds
/// (default 60) and delivery proofs and receipts within `delay_secs`
/// (default: random delays of minutes, which hide who received what).
/// Zero leaves a default alone. Do not shorten the delays in a real app.
///
/// # Safety
/// `config` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ferry_config_set_timing(
    config: *const FerryConfig,
    resync_secs: u64,
    delay_secs: u64,
) -> FerryResult {
    // SAFETY: forwarded caller promise.
    unsafe {
        with(config, |s| {
            if resync_secs > 0 {
                s.resync_secs = Some(resync_secs);
            }
            if delay_secs > 0 {
                s.delivery_delays = Some(((0, delay_secs), (0, delay_secs)));
            }
            Ok(())
        })
    }
}
