//! Text from documents (CONTRACT §7.6): PDF through `pdf-extract`, plain text, Markdown, CSV
//! and JSON as the UTF-8 they are (sniffing already checked that).
//!
//! Pure and synchronous. It bounds what it *returns* (`max_text_bytes`), not the time or
//! memory a hostile PDF makes a parser spend: the server runs PDFs in a child process with a
//! wall-clock timeout and an address-space limit (`natter extract-document`), and the text
//! types are a plain UTF-8 check over at most `--max-attachment-bytes`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};

/// The most text kept for one document (1 MiB): the model gets far less (the attachment text
/// budget), so more would only fill the store.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 1 << 20;

/// What a document yielded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extracted {
    /// The text, at most `max_text_bytes` long (cut at a character boundary).
    pub text: String,
    /// Characters (Unicode scalar values) in `text`.
    pub chars: u64,
    /// Pages, for a PDF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
    /// Whether `text` was cut at `max_text_bytes`.
    #[serde(default)]
    pub truncated: bool,
}

/// Why a document yielded no text. `code` is one of the `CODE_*` constants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractError {
    pub code: String,
    pub message: String,
}

/// Not a document type this module reads.
pub const CODE_UNSUPPORTED: &str = "unsupported_media_type";
/// The bytes are not a document of their type that the parser can read.
pub const CODE_UNREADABLE: &str = "unreadable";
/// Extraction ran past its time limit (set by the process runner, not here).
pub const CODE_TIMEOUT: &str = "timeout";
/// Extraction needed more memory than allowed, or wrote more than allowed (process runner).
pub const CODE_TOO_LARGE: &str = "too_large";

impl ExtractError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ExtractError {}

/// One line of what `natter extract-document` writes: progress, then one result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChildMessage {
    Progress { percent: u8 },
    Done(Extracted),
    Failed(ExtractError),
}

const PDF: &str = "application/pdf";
const TEXT_TYPES: [&str; 4] = [
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/json",
];

/// The media type without parameters (`text/plain; charset=utf-8` → `text/plain`), lowercase.
fn essence(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether attachments of this type are processed into text.
pub fn is_document(mime: &str) -> bool {
    let m = essence(mime);
    m == PDF || TEXT_TYPES.contains(&m.as_str())
}

/// Whether extraction of this type is a PDF parse (which the server runs in a child process).
pub fn is_pdf(mime: &str) -> bool {
    essence(mime) == PDF
}

/// Extracts the text of a document of type `mime`. `progress` gets a percentage now and then
/// (per page for a PDF).
pub fn extract(
    mime: &str,
    bytes: &[u8],
    max_text_bytes: usize,
    progress: &mut dyn FnMut(u8),
) -> Result<Extracted, ExtractError> {
    let m = essence(mime);
    if m == PDF {
        // pdf-extract panics on some malformed input; a panic is an unreadable document.
        catch_unwind(AssertUnwindSafe(|| pdf(bytes, max_text_bytes, progress))).unwrap_or_else(
            |_| {
                Err(ExtractError::new(
                    CODE_UNREADABLE,
                    "the PDF parser gave up on this file",
                ))
            },
        )
    } else if TEXT_TYPES.contains(&m.as_str()) {
        text(bytes, max_text_bytes)
    } else {
        Err(ExtractError::new(
            CODE_UNSUPPORTED,
            format!("`{m}` is not a document type whose text is extracted"),
        ))
    }
}

fn text(bytes: &[u8], max_text_bytes: usize) -> Result<Extracted, ExtractError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let s = std::str::from_utf8(bytes).map_err(|e| {
        ExtractError::new(
            CODE_UNREADABLE,
            format!("the text is not UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let mut text = s.to_owned();
    let truncated = cut(&mut text, max_text_bytes);
    Ok(done(text, None, truncated))
}

fn done(text: String, pages: Option<u32>, truncated: bool) -> Extracted {
    Extracted {
        chars: text.chars().count() as u64,
        text,
        pages,
        truncated,
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary; true if it cut.
fn cut(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

fn pdf(
    bytes: &[u8],
    max_text_bytes: usize,
    progress: &mut dyn FnMut(u8),
) -> Result<Extracted, ExtractError> {
    use pdf_extract::{Document, PlainTextOutput, output_doc_page};
    let unreadable = |e: &dyn std::fmt::Display| {
        ExtractError::new(CODE_UNREADABLE, format!("the PDF could not be read: {e}"))
    };
    let mut doc = Document::load_mem(bytes).map_err(|e| unreadable(&e))?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(ExtractError::new(
            CODE_UNREADABLE,
            "the PDF is encrypted with a password",
        ));
    }
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let total = pages.len();
    let mut text = String::new();
    let mut truncated = false;
    let mut first_error = None;
    let mut read_pages = 0usize;
    for (i, page) in pages.iter().enumerate() {
        let mut page_text = String::new();
        let result = {
            let mut out = PlainTextOutput::new(&mut page_text);
            output_doc_page(&doc, &mut out, *page)
        };
        match result {
            Ok(()) => {
                read_pages += 1;
                if !text.is_empty() && !page_text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(page_text.trim_matches('\n'));
            }
            // One bad page does not lose the others.
            Err(e) => {
                first_error.get_or_insert_with(|| format!("page {page}: {e:?}"));
            }
        }
        if cut(&mut text, max_text_bytes) {
            truncated = true;
            break;
        }
        progress(((i + 1) * 100 / total.max(1)).min(100) as u8);
    }
    if read_pages == 0
        && total > 0
        && let Some(e) = first_error
    {
        return Err(unreadable(&e));
    }
    Ok(done(text, Some(total as u32), truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF showing `text` in Helvetica, with a correct xref table.
    pub(crate) fn pdf_with(text: &str) -> Vec<u8> {
        let content = format!("BT /F1 24 Tf 72 712 Td ({text}) Tj ET");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
            format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        ];
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn run(mime: &str, bytes: &[u8]) -> Result<Extracted, ExtractError> {
        extract(mime, bytes, DEFAULT_MAX_TEXT_BYTES, &mut |_| {})
    }

    #[test]
    fn a_pdf_yields_its_text_and_pages() {
        let mut seen = Vec::new();
        let got = extract(
            "application/pdf",
            &pdf_with("Hello from the PDF"),
            DEFAULT_MAX_TEXT_BYTES,
            &mut |p| seen.push(p),
        )
        .expect("extracts");
        assert!(got.text.contains("Hello from the PDF"), "{got:?}");
        assert_eq!(got.pages, Some(1));
        assert_eq!(got.chars, got.text.chars().count() as u64);
        assert!(!got.truncated);
        assert_eq!(seen, vec![100]);
    }

    #[test]
    fn text_types_are_their_utf8() {
        for mime in [
            "text/plain",
            "text/markdown",
            "text/csv; charset=utf-8",
            "application/json",
        ] {
            let got = run(mime, "\u{FEFF}héllo, wörld".as_bytes()).expect("extracts");
            assert_eq!(got.text, "héllo, wörld");
            assert_eq!(got.chars, 12);
            assert_eq!(got.pages, None);
        }
        assert_eq!(
            run("text/plain", b"\xff\xfe").expect_err("not utf-8").code,
            CODE_UNREADABLE
        );
    }

    #[test]
    fn the_text_is_cut_at_a_character_boundary() {
        // Byte 2 is inside the `é`: the cut keeps `a` only.
        let got =
            extract("text/plain", "aé".repeat(10).as_bytes(), 2, &mut |_| {}).expect("extracts");
        assert_eq!(got.text, "a");
        assert!(got.truncated);
        assert_eq!(got.chars, 1);
    }

    #[test]
    fn broken_pdfs_and_other_types_are_errors_not_panics() {
        assert!(is_document("application/pdf") && is_document("TEXT/Markdown"));
        assert!(!is_document("image/png"));
        assert_eq!(
            run("image/png", b"\x89PNG").expect_err("no text").code,
            CODE_UNSUPPORTED
        );
        for bytes in [
            b"%PDF-1.4\n".to_vec(),
            b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 1 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF".to_vec(),
            pdf_with("x")[..60].to_vec(),
            // Deeply nested arrays: a recursive parser must not overflow the stack.
            [b"%PDF-1.4\n1 0 obj\n".to_vec(), vec![b'['; 100_000], b"\nendobj\n%%EOF".to_vec()].concat(),
        ] {
            let got = run("application/pdf", &bytes);
            assert!(
                matches!(&got, Err(e) if e.code == CODE_UNREADABLE) || matches!(&got, Ok(x) if x.chars == 0),
                "{got:?}"
            );
        }
    }

    #[test]
    fn child_messages_are_one_json_line_each() {
        let line = serde_json::to_string(&ChildMessage::Progress { percent: 50 }).expect("json");
        assert_eq!(line, r#"{"progress":{"percent":50}}"#);
        let done = ChildMessage::Done(done("hi".into(), Some(1), false));
        let back: ChildMessage =
            serde_json::from_str(&serde_json::to_string(&done).expect("json")).expect("reads");
        assert_eq!(back, done);
    }
}
