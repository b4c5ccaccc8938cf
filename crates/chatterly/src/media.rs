//! What an uploaded file is, judged from its bytes (never from the client's
//! name or claimed type), how it may be served, and its preview.
//!
//! Sniffing is `infer`'s magic numbers; it knows binary formats but not
//! text, so the few text kinds that matter for safety (HTML, SVG, XML) and
//! plain UTF-8 text are recognised here. Only types on a short allow-list are
//! ever served `inline`; everything else, HTML and SVG always, is served as
//! a download.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

/// Bytes of the start of a file that sniffing looks at.
pub const SNIFF_BYTES: usize = 8 * 1024;
/// Larger files get no thumbnail (their bytes are not kept in memory for
/// decoding).
pub const THUMBNAIL_SOURCE_MAX_BYTES: u64 = 20 * 1024 * 1024;
/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// Images with a side longer than this are not decoded (a decompression
/// bomb declares huge dimensions in a small file).
const DECODE_MAX_SIDE: u32 = 16_384;
/// What a decoder may allocate.
const DECODE_MAX_ALLOC: u64 = 256 * 1024 * 1024;

pub const OCTET_STREAM: &str = "application/octet-stream";

/// The content type of a file starting with `head` (its first
/// [`SNIFF_BYTES`] or all of it if shorter).
pub fn sniff(head: &[u8]) -> String {
    // Markup first: `infer` would call an SVG with an XML prologue text/xml.
    let text = sniff_text(head);
    if let Some(markup) = text.filter(|t| *t != "text/plain") {
        return markup.to_owned();
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    text.unwrap_or(OCTET_STREAM).to_owned()
}

/// Markup and plain text, which `infer` does not name.
fn sniff_text(head: &[u8]) -> Option<&'static str> {
    if head.is_empty() || head.contains(&0) {
        return None;
    }
    // The head may end inside a character.
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    let start = text.trim_start_matches('\u{feff}').trim_start();
    let lower: String = start
        .chars()
        .take(1024)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("<svg") || (lower.starts_with("<?xml") && lower.contains("<svg")) {
        return Some("image/svg+xml");
    }
    if lower.starts_with("<!doctype html")
        || ["<html", "<head", "<body", "<script", "<iframe"]
            .iter()
            .any(|tag| lower.starts_with(tag))
    {
        return Some("text/html");
    }
    if lower.starts_with("<?xml") {
        return Some("application/xml");
    }
    Some("text/plain")
}

/// Raster images the server can decode and make a thumbnail of.
pub fn is_raster_image(content_type: &str) -> bool {
    image_format(content_type).is_some()
}

fn image_format(content_type: &str) -> Option<ImageFormat> {
    match content_type {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Whether a browser may show it in place (`Content-Disposition: inline`):
/// raster images and plain audio and video. Never HTML, SVG, XML or PDF
/// (they can carry script), nor anything unknown.
pub fn inline_safe(content_type: &str) -> bool {
    is_raster_image(content_type)
        || matches!(content_type, "image/bmp" | "image/avif")
        || ((content_type.starts_with("audio/") || content_type.starts_with("video/"))
            && !content_type.contains("xml"))
}

/// A decoded image's size and, when it could be made, its thumbnail.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub thumbnail: Option<Thumbnail>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    /// `image/jpeg` (opaque images) or `image/png` (with transparency).
    pub content_type: &'static str,
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(DECODE_MAX_SIDE);
    limits.max_image_height = Some(DECODE_MAX_SIDE);
    limits.max_alloc = Some(DECODE_MAX_ALLOC);
    limits
}

/// Dimensions from the header alone (no pixels decoded), for an image whose
/// bytes were not all kept.
pub fn dimensions(content_type: &str, head: &[u8]) -> Option<(u32, u32)> {
    let format = image_format(content_type)?;
    let mut reader = ImageReader::with_format(Cursor::new(head), format);
    reader.limits(limits());
    reader.into_dimensions().ok()
}

/// Decodes a whole raster image (within the decoding limits) and makes its
/// thumbnail. CPU-bound: run it off the async threads. `None` when the bytes
/// are not a decodable image of that type.
pub fn picture(content_type: &str, bytes: &[u8]) -> Option<Picture> {
    let format = image_format(content_type)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    let decoded = match reader.decode() {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::debug!(error = %e, "an uploaded image did not decode");
            // Too large to decode, or damaged: the header may still tell its size.
            return dimensions(content_type, bytes).map(|(width, height)| Picture {
                width,
                height,
                thumbnail: None,
            });
        }
    };
    let (width, height) = (decoded.width(), decoded.height());
    let small = decoded.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE);
    let mut out = Cursor::new(Vec::new());
    let thumbnail = if small.color().has_alpha() {
        small
            .write_to(&mut out, ImageFormat::Png)
            .ok()
            .map(|()| "image/png")
    } else {
        image::DynamicImage::ImageRgb8(small.to_rgb8())
            .write_to(&mut out, ImageFormat::Jpeg)
            .ok()
            .map(|()| "image/jpeg")
    };
    Some(Picture {
        width,
        height,
        thumbnail: thumbnail.map(|content_type| Thumbnail {
            bytes: out.into_inner(),
            content_type,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        });
        let mut out = Cursor::new(Vec::new());
        image
            .write_to(&mut out, ImageFormat::Png)
            .expect("encode png");
        out.into_inner()
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(&png(2, 2)), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n..."), "application/pdf");
        assert_eq!(sniff(b"hello, world\n"), "text/plain");
        assert_eq!(sniff(b""), OCTET_STREAM);
        assert_eq!(sniff(&[0, 1, 2, 3, 0xff]), OCTET_STREAM);
        assert_eq!(
            sniff(b"  <!DOCTYPE html><html><script>alert(1)</script>"),
            "text/html"
        );
        assert_eq!(
            sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
            "image/svg+xml"
        );
        assert_eq!(
            sniff(b"<?xml version=\"1.0\"?>\n<svg onload=\"alert(1)\"/>"),
            "image/svg+xml"
        );
        // A multi-byte character cut at the end of the head is still text.
        assert_eq!(sniff("héllo é".as_bytes().split_at(7).0), "text/plain");
    }

    #[test]
    fn only_harmless_types_are_inline() {
        for safe in [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "video/mp4",
            "audio/mpeg",
        ] {
            assert!(inline_safe(safe), "{safe}");
        }
        for unsafe_ in [
            "text/html",
            "image/svg+xml",
            "application/xml",
            "application/pdf",
            "text/plain",
            OCTET_STREAM,
        ] {
            assert!(!inline_safe(unsafe_), "{unsafe_}");
        }
    }

    #[test]
    fn pictures_get_dimensions_and_a_small_thumbnail() {
        let decoded = picture("image/png", &png(640, 480)).expect("decodes");
        assert_eq!((decoded.width, decoded.height), (640, 480));
        let thumbnail = decoded.thumbnail.expect("a thumbnail");
        assert_eq!(thumbnail.content_type, "image/jpeg");
        let small = image::load_from_memory(&thumbnail.bytes).expect("thumbnail decodes");
        assert_eq!((small.width(), small.height()), (320, 240));
        assert_eq!(dimensions("image/png", &png(30, 20)), Some((30, 20)));
        assert!(picture("image/png", b"not a png").is_none());
        assert!(picture("text/plain", b"hello").is_none());
    }

    #[test]
    fn a_decompression_bomb_is_not_decoded() {
        // A valid header claiming 100,000 x 100,000 pixels.
        let mut bomb = png(1, 1);
        // IHDR width and height are bytes 16..24.
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let result = picture("image/png", &bomb);
        assert!(
            result.as_ref().is_none_or(|p| p.thumbnail.is_none()),
            "{result:?}"
        );
    }
}
