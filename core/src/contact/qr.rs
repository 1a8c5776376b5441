//! QR renderings of contact codes (feature `qr`).
//!
//! The QR symbol carries the code in uppercase: bech32's alphabet is then a
//! subset of QR's alphanumeric mode, which packs 5.5 bits per character
//! instead of 8, so the symbol is smaller and easier to scan.
//! [`ContactCard::from_code`](super::ContactCard::from_code) accepts both cases.

use qrcode::{Color, EcLevel, QrCode, render::svg, render::unicode::Dense1x2};
use thiserror::Error;

/// Why a QR code could not be produced.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QrError {
    /// The text does not fit into any QR version at the chosen error correction.
    #[error("text does not fit in a QR code")]
    TooLong,
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

fn symbol(code: &str) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(code.to_ascii_uppercase(), EcLevel::M)
        .map_err(|_| QrError::TooLong)
}

/// Renders `code` for a terminal with Unicode half blocks (two modules per
/// character cell), dark modules on a light background, with a quiet zone.
///
/// # Errors
/// [`QrError::TooLong`] if the code does not fit in a QR symbol.
pub fn to_terminal(code: &str) -> Result<String, QrError> {
    Ok(symbol(code)?
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// Renders `code` as a standalone SVG document.
///
/// # Errors
/// [`QrError::TooLong`] if the code does not fit in a QR symbol.
pub fn to_svg(code: &str) -> Result<String, QrError> {
    Ok(symbol(code)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .build())
}

/// Renders `code` as a PNG image (8-bit grayscale, `scale` pixels per module,
/// 4-module quiet zone).
///
/// # Errors
/// [`QrError`] if the code does not fit or the encoder fails.
pub fn to_png(code: &str, scale: u32) -> Result<Vec<u8>, QrError> {
    const QUIET: usize = 4;
    let qr = symbol(code)?;
    let modules = qr.width();
    let scale = usize::try_from(scale.clamp(1, 32)).unwrap_or(1);
    let side = (modules + 2 * QUIET) * scale;
    let colors = qr.to_colors();
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * scale..(my + 1) * scale {
            if let Some(row) = pixels.get_mut(y * side + mx * scale..y * side + (mx + 1) * scale) {
                row.fill(0);
            }
        }
    }
    let side = u32::try_from(side).map_err(|_| QrError::TooLong)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| QrError::Png(e.to_string()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| QrError::Png(e.to_string()))?;
    writer.finish().map_err(|e| QrError::Png(e.to_string()))?;
    Ok(out)
}
