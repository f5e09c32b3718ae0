//! The type of an upload, from its bytes (magic numbers), and an image's dimensions.
//!
//! The client's file name and claimed type only choose among the text types (plain, Markdown,
//! CSV, JSON) once the bytes are known to be UTF-8 text; they never make binary bytes text, and
//! never make one binary type another.

/// The types an attachment may have (CONTRACT §7.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Png,
    Jpeg,
    Gif,
    Webp,
    Pdf,
    PlainText,
    Markdown,
    Csv,
    Json,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Self::Png,
        Self::Jpeg,
        Self::Gif,
        Self::Webp,
        Self::Pdf,
        Self::PlainText,
        Self::Markdown,
        Self::Csv,
        Self::Json,
    ];

    /// The stored and served MIME type.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Pdf => "application/pdf",
            Self::PlainText => "text/plain",
            Self::Markdown => "text/markdown",
            Self::Csv => "text/csv",
            Self::Json => "application/json",
        }
    }

    pub fn from_mime_type(mime: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.mime_type() == mime)
    }

    pub fn is_image(self) -> bool {
        matches!(self, Self::Png | Self::Jpeg | Self::Gif | Self::Webp)
    }

    /// Documents get their text extracted after upload (PDF and the text types).
    pub fn is_document(self) -> bool {
        !self.is_image()
    }

    pub fn is_text(self) -> bool {
        matches!(
            self,
            Self::PlainText | Self::Markdown | Self::Csv | Self::Json
        )
    }
}

/// What sniffing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub kind: Kind,
    /// Width and height in pixels, for images whose header gives them.
    pub dimensions: Option<(u32, u32)>,
}

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("the file is empty")]
    Empty,
    #[error(
        "the file is not one of the accepted types (PNG, JPEG, GIF or WebP images, PDF, UTF-8 \
         text: plain, Markdown, CSV, JSON)"
    )]
    Type,
}

/// The kind of `bytes`, from their magic numbers; `name` (the client's file name) and
/// `claimed` (its MIME type) only pick among the text kinds.
pub fn sniff(bytes: &[u8], name: &str, claimed: Option<&str>) -> Result<Sniffed, Unsupported> {
    if bytes.is_empty() {
        return Err(Unsupported::Empty);
    }
    if let Some(kind) = binary_kind(bytes) {
        let dimensions = if kind.is_image() {
            image_dimensions(kind, bytes)
        } else {
            None
        };
        return Ok(Sniffed { kind, dimensions });
    }
    if is_text(bytes) {
        return Ok(Sniffed {
            kind: text_kind(name, claimed),
            dimensions: None,
        });
    }
    Err(Unsupported::Type)
}

/// A binary kind by magic number, from the first bytes alone. Also what a streaming upload
/// can use to refuse early: `None` with at least [`MAGIC_PREFIX`] bytes and bytes that are
/// not UTF-8 means the whole file will be refused.
pub fn binary_kind(bytes: &[u8]) -> Option<Kind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Kind::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Kind::Jpeg)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(Kind::Gif)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Kind::Webp)
    } else if bytes.starts_with(b"%PDF-") {
        Some(Kind::Pdf)
    } else {
        None
    }
}

/// Bytes enough to tell every binary kind.
pub const MAGIC_PREFIX: usize = 12;

/// UTF-8 (a BOM allowed) with no control characters but tab, line feed, carriage return and
/// form feed: what a text file is. NUL and other controls mark binary data.
pub fn is_text(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => !s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c')),
        Err(_) => false,
    }
}

/// The text kind the client means: its claimed type when that is a text type, else the
/// file name's extension, else plain text.
fn text_kind(name: &str, claimed: Option<&str>) -> Kind {
    let claimed = claimed
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match claimed.as_str() {
        "text/markdown" | "text/x-markdown" => return Kind::Markdown,
        "text/csv" => return Kind::Csv,
        "application/json" | "text/json" => return Kind::Json,
        _ => {}
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "md" | "markdown" => Kind::Markdown,
        "csv" => Kind::Csv,
        "json" => Kind::Json,
        _ => Kind::PlainText,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(s[0] as u32 | (s[1] as u32) << 8 | (s[2] as u32) << 16)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Width and height from an image's header. Hand-written for the four accepted formats (a
/// few fixed offsets, and for JPEG a walk over segment headers): no dependency, and every
/// read is bounds-checked (the fuzz target `attachments` runs it on arbitrary bytes).
pub fn image_dimensions(kind: Kind, b: &[u8]) -> Option<(u32, u32)> {
    let dims = match kind {
        // Signature (8), IHDR length (4) and type (4), then width and height.
        Kind::Png if b.get(12..16) == Some(b"IHDR") => (be32(b, 16)?, be32(b, 20)?),
        Kind::Gif => (le16(b, 6)?, le16(b, 8)?),
        Kind::Webp => webp_dimensions(b)?,
        Kind::Jpeg => jpeg_dimensions(b)?,
        _ => return None,
    };
    (dims.0 > 0 && dims.1 > 0).then_some(dims)
}

fn webp_dimensions(b: &[u8]) -> Option<(u32, u32)> {
    match b.get(12..16)? {
        // Lossy: a frame tag (3), start code (3), then 14-bit width and height.
        b"VP8 " => {
            if b.get(23..26)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            Some((le16(b, 26)? & 0x3FFF, le16(b, 28)? & 0x3FFF))
        }
        // Lossless: signature 0x2F, then 14 bits each of width - 1 and height - 1.
        b"VP8L" => {
            if *b.get(20)? != 0x2F {
                return None;
            }
            let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        // Extended: 24-bit canvas width - 1 and height - 1.
        b"VP8X" => Some((le24(b, 24)? + 1, le24(b, 27)? + 1)),
        _ => None,
    }
}

fn jpeg_dimensions(b: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    // Each step moves past one segment, so the walk ends within `b.len()` steps.
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            // Fill byte.
            i += 1;
            continue;
        }
        // Markers without a length.
        if matches!(marker, 0x01 | 0xD0..=0xD7) {
            i += 2;
            continue;
        }
        let len = be16(b, i + 2)? as usize;
        if len < 2 {
            return None;
        }
        // Start of frame (baseline, progressive, …), not DHT (C4), JPG (C8) or DAC (CC).
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let h = be16(b, i + 5)?;
            let w = be16(b, i + 7)?;
            return Some((w, h));
        }
        if marker == 0xDA || marker == 0xD9 {
            // Start of scan or end of image before a frame header.
            return None;
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn images_by_magic_whatever_the_name() {
        let s = sniff(&png(3, 2), "notes.txt", Some("text/plain")).unwrap();
        assert_eq!(s.kind, Kind::Png);
        assert_eq!(s.dimensions, Some((3, 2)));
        let gif = b"GIF89a\x05\x00\x07\x00rest";
        assert_eq!(sniff(gif, "a.gif", None).unwrap().dimensions, Some((5, 7)));
        // A JPEG with an APP0 segment, then SOF0 of 16x9.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0, 0];
        jpeg.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 8, 0, 9, 0, 16, 3]);
        assert_eq!(
            sniff(&jpeg, "x", None).unwrap(),
            Sniffed {
                kind: Kind::Jpeg,
                dimensions: Some((16, 9))
            }
        );
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[9, 0, 0, 4, 0, 0]);
        assert_eq!(sniff(&webp, "x", None).unwrap().dimensions, Some((10, 5)));
        assert_eq!(
            sniff(b"%PDF-1.4\n...", "a.png", Some("image/png"))
                .unwrap()
                .kind,
            Kind::Pdf
        );
    }

    #[test]
    fn executables_and_binary_are_refused_whatever_the_claim() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0";
        assert_eq!(
            sniff(elf, "cat.png", Some("image/png")),
            Err(Unsupported::Type)
        );
        assert_eq!(
            sniff(b"MZ\x90\0\x03\0\0\0", "a.txt", Some("text/plain")),
            Err(Unsupported::Type)
        );
        assert_eq!(sniff(b"\xff\xfe", "a.txt", None), Err(Unsupported::Type));
        assert_eq!(sniff(b"", "a.txt", None), Err(Unsupported::Empty));
        assert_eq!(sniff(b"abc\0", "a.txt", None), Err(Unsupported::Type));
    }

    #[test]
    fn text_kinds_from_claim_then_name() {
        let k = |name, claim| sniff("a,b\n1,2\n".as_bytes(), name, claim).unwrap().kind;
        assert_eq!(k("x.csv", None), Kind::Csv);
        assert_eq!(k("x.txt", Some("text/csv")), Kind::Csv);
        assert_eq!(k("x.MD", None), Kind::Markdown);
        assert_eq!(k("x.json", None), Kind::Json);
        assert_eq!(k("x", Some("application/octet-stream")), Kind::PlainText);
        // A binary claim does not make text binary, nor the reverse.
        assert_eq!(k("x.png", Some("image/png")), Kind::PlainText);
        assert_eq!(
            sniff("\u{feff}héllo\r\n\tx".as_bytes(), "a", None)
                .unwrap()
                .kind,
            Kind::PlainText
        );
    }

    #[test]
    fn truncated_headers_have_no_dimensions() {
        let p = png(1, 1);
        for n in 8..p.len() {
            let _ = sniff(&p[..n], "x", None);
        }
        assert_eq!(image_dimensions(Kind::Png, &p[..20]), None);
        assert_eq!(image_dimensions(Kind::Jpeg, &[0xFF, 0xD8, 0xFF]), None);
        assert_eq!(image_dimensions(Kind::Png, &png(0, 5)), None);
    }
}
