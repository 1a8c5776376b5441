//! Contact codes (bech32m `ferry1…`) and QR renderings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use ferry_core::{
    contact::{CODE_PREFIX, CodeError, ContactCard, MAX_CODE_LEN},
    identity::Identity,
};

/// The same card bytes as a valid bech32m string under another prefix.
fn encode_foreign(code: &str) -> String {
    let card = ContactCard::from_code(code).unwrap();
    let hrp = bech32::Hrp::parse("other").unwrap();
    bech32::encode_lower::<bech32::Bech32m>(hrp, &card.to_bytes()).unwrap()
}

fn code_of(name: &str, otks: usize) -> (ContactCard, String) {
    let mut id = Identity::generate(&mut rand::rng());
    let card = id.contact_card(Some(name), 1_700_000_000, otks).unwrap();
    let code = card.to_code().unwrap();
    (card, code)
}

#[test]
fn code_round_trips_and_has_the_prefix() {
    let (card, code) = code_of("Alice", 4);
    assert!(code.starts_with(&format!("{CODE_PREFIX}1")));
    assert!(code.len() <= MAX_CODE_LEN);
    assert!(
        code.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    assert_eq!(ContactCard::from_code(&code).unwrap(), card);
    // Uppercase (as carried in QR codes) and surrounding whitespace are fine.
    assert_eq!(
        ContactCard::from_code(&code.to_ascii_uppercase()).unwrap(),
        card
    );
    assert_eq!(
        ContactCard::from_code(&format!("  {code}\n")).unwrap(),
        card
    );
}

#[test]
fn every_single_character_typo_is_caught() {
    let (_, code) = code_of("Bob", 2);
    let charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let data_start = CODE_PREFIX.len() + 1;
    for pos in data_start..code.len() {
        let original = code.as_bytes()[pos] as char;
        // One substitution per position keeps the test fast; the checksum
        // guarantees detection of any single substitution.
        let replacement = charset.chars().find(|&c| c != original).unwrap();
        let mut typo = code.clone();
        typo.replace_range(pos..=pos, &replacement.to_string());
        assert!(
            matches!(ContactCard::from_code(&typo), Err(CodeError::Checksum)),
            "typo at {pos} not caught as a checksum error"
        );
    }
}

#[test]
fn swapped_adjacent_characters_are_caught() {
    let (_, code) = code_of("Carol", 1);
    let bytes = code.as_bytes();
    for pos in CODE_PREFIX.len() + 1..code.len() - 1 {
        if bytes[pos] == bytes[pos + 1] {
            continue;
        }
        let mut swapped = bytes.to_vec();
        swapped.swap(pos, pos + 1);
        let swapped = String::from_utf8(swapped).unwrap();
        assert!(
            ContactCard::from_code(&swapped).is_err(),
            "swap at {pos} accepted"
        );
    }
}

#[test]
fn foreign_prefix_mixed_case_and_junk_are_refused() {
    let (_, code) = code_of("Dave", 0);
    let foreign = encode_foreign(&code);
    assert!(matches!(
        ContactCard::from_code(&foreign),
        Err(CodeError::WrongPrefix)
    ));

    let mut mixed = code.clone();
    mixed.replace_range(7..8, &code[7..8].to_ascii_uppercase());
    if mixed != code {
        assert!(ContactCard::from_code(&mixed).is_err());
    }
    for junk in [
        "",
        "ferry1",
        "ferry",
        "hello world",
        "ferry1qqqqqq",
        "\u{0}\u{ff}",
    ] {
        assert!(ContactCard::from_code(junk).is_err(), "{junk:?} accepted");
    }
    let long = format!("ferry1{}", "q".repeat(MAX_CODE_LEN));
    assert!(matches!(
        ContactCard::from_code(&long),
        Err(CodeError::TooLong)
    ));
}

#[test]
fn valid_checksum_around_a_forged_card_is_refused() {
    // Re-encode a tampered card under a correct checksum: the checksum is
    // only against typos, the signature is what stops forgery.
    let (card, _) = code_of("Erin", 1);
    let mut wire = card.to_wire();
    wire.issued_at += 1;
    let bytes = ferry_core::proto::encode(&wire);
    let hrp = bech32::Hrp::parse(CODE_PREFIX).unwrap();
    let forged = bech32::encode_lower::<bech32::Bech32m>(hrp, &bytes).unwrap();
    assert!(matches!(
        ContactCard::from_code(&forged),
        Err(CodeError::Card(_))
    ));
}

#[test]
fn cards_too_large_for_a_code_are_an_error_not_a_truncation() {
    let mut id = Identity::generate(&mut rand::rng());
    let card = id.contact_card(Some(&"n".repeat(64)), 1, 32).unwrap();
    assert!(matches!(card.to_code(), Err(CodeError::CardTooLarge(_))));
}

#[cfg(feature = "qr")]
mod qr {
    use ferry_core::contact::{ContactCard, qr};

    #[test]
    fn png_qr_code_scans_back_to_the_same_card() {
        let (card, code) = super::code_of("Frank", 4);
        let png = qr::to_png(&code, 4).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, code.to_ascii_uppercase());
        assert_eq!(ContactCard::from_code(&content).unwrap(), card);
    }

    #[test]
    fn svg_and_terminal_renderings_are_produced() {
        let (_, code) = super::code_of("Grace", 4);
        let svg = qr::to_svg(&code).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
        let term = qr::to_terminal(&code).unwrap();
        let lines: Vec<&str> = term.lines().collect();
        assert!(lines.len() > 20);
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
    }

    /// Reads a half-block rendering back as a scanner would see it: light
    /// cells (`█`) on a dark terminal, two modules per cell vertically.
    fn scan_terminal(term: &str) -> String {
        const SCALE: usize = 4;
        let rows: Vec<Vec<char>> = term.lines().map(|l| l.chars().collect()).collect();
        let (w, h) = (rows[0].len() * SCALE, rows.len() * 2 * SCALE);
        let light = |x: usize, y: usize| {
            let c = rows[y / (2 * SCALE)][x / SCALE];
            let top = (y / SCALE).is_multiple_of(2);
            matches!((c, top), ('█', _) | ('▀', true) | ('▄', false))
        };
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(
                w,
                h,
                |x, y| {
                    if light(x, y) { 255 } else { 0 }
                },
            );
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn a_terminal_qr_code_fits_80_columns_and_scans() {
        // A node's code (no one-time keys: nobody uses them from a code
        // that may have reached several people), up to the longest name a
        // card takes.
        for name in ["Al", &"n".repeat(ferry_proto::limits::MAX_DISPLAY_NAME_LEN)] {
            let (card, code) = super::code_of(name, 0);
            let term = qr::to_terminal(&code).unwrap();
            let width = term.lines().next().unwrap().chars().count();
            assert!(
                width <= 80,
                "{width} columns for a {}-character code",
                code.len()
            );
            let content = scan_terminal(&term);
            assert_eq!(ContactCard::from_code(&content).unwrap(), card);
        }
    }
}
