#![no_main]
//! Fuzzes the C entry points that take bytes from the app, through the C
//! ABI itself (as C would call them): contact codes and hex IDs as C
//! strings (any bytes, not only UTF-8), sneakernet bundle files, and bytes
//! fed into an app-pumped link as if they came off a radio. One node,
//! started once, takes every input; nothing may crash, hang or leak.

use std::{
    ffi::CString,
    sync::OnceLock,
};

use ferry::{
    config::*,
    link::*,
    node::*,
    types::*,
};
use libfuzzer_sys::fuzz_target;

struct Shared {
    node: *mut FerryNode,
    dir: std::path::PathBuf,
}
// SAFETY: the C ABI's handles may be used from any thread.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ferry-fuzz-ffi-{}", std::process::id()));
        let store = CString::new(dir.join("store").to_string_lossy().as_bytes()).unwrap_or_default();
        let mut config = std::ptr::null_mut();
        let mut node = std::ptr::null_mut();
        // SAFETY: valid out-pointers and NUL-terminated strings.
        unsafe {
            ferry_config_new(&mut config);
            ferry_config_set_storage(config, store.as_ptr(), c"fuzz".as_ptr());
            ferry_config_set_kdf(config, 256, 1, 1);
            ferry_config_add_listen_address(config, c"/ip4/127.0.0.1/tcp/0".as_ptr());
            ferry_config_set_transports(config, 0, 0);
            ferry_node_start(config, &mut node);
            ferry_config_free(&mut config);
        }
        Shared { node, dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let shared = shared();
    // A C string of the bytes up to the first NUL.
    let text = CString::new(rest.split(|b| *b == 0).next().unwrap_or_default())
        .unwrap_or_default();
    // SAFETY: a live node (or NULL, which every call refuses), valid
    // NUL-terminated strings, valid buffers and out-pointers; everything
    // returned is freed with the library's functions.
    unsafe {
        match selector % 4 {
            0 => {
                let mut key = FerryIdentityKey::default();
                ferry_node_add_contact(shared.node, text.as_ptr(), &mut key);
            }
            1 => {
                let mut id = FerryMessageId::default();
                ferry_message_id_from_hex(text.as_ptr(), &mut id);
                let mut svg = std::ptr::null_mut();
                ferry_qr_svg(text.as_ptr(), &mut svg);
                ferry_string_free(&mut svg);
            }
            2 => {
                let path = shared.dir.join("input.ferry");
                if std::fs::write(&path, rest).is_ok() {
                    let path = CString::new(path.to_string_lossy().as_bytes()).unwrap_or_default();
                    let mut summary = FerryImportSummary::default();
                    ferry_node_import_bundle(shared.node, path.as_ptr(), &mut summary);
                }
            }
            _ => {
                let mut link = std::ptr::null_mut();
                if ferry_link_open(shared.node, c"fuzz".as_ptr(), &mut link)
                    == ferry::FerryResult::Ok
                {
                    let mut written = 0;
                    ferry_link_write(link, rest.as_ptr(), rest.len(), 100, &mut written);
                    let mut buf = [0u8; 4096];
                    let mut read = 0;
                    ferry_link_read(link, buf.as_mut_ptr(), buf.len(), 10, &mut read);
                    ferry_link_close(link);
                    ferry_link_free(&mut link);
                }
            }
        }
    }
});
