//! How diagnostics reach the user: rendered against the source as rustc renders them, or as
//! JSON, one object per diagnostic and line (`--error-format json`), for editors and tools.
//!
//! A JSON diagnostic carries `level` (`error` or `warning`), `code`, `message`, `spans` (each
//! with `file_name`, byte offsets, 1-based lines and columns in characters, `is_primary` and
//! `label`), `notes`, `help` and `rendered` (the human form), as rustc's JSON does. An error
//! that is not about the program (a bad option, an unreadable file, a compiler bug) has no
//! code and no spans.

use kiln_ir::Diagnostic;
use serde_json::{json, Value};

mod pages {
    include!(concat!(env!("OUT_DIR"), "/error_pages.rs"));
}

/// The errors page of a diagnostic code (docs/errors/CODE.md, built into the binary), for
/// `kiln explain`; the code is matched without regard to case.
pub fn explain(code: &str) -> Option<&'static str> {
    pages::PAGES.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)).map(|&(_, page)| page)
}

/// Every code with an errors page, in order.
pub fn codes() -> impl Iterator<Item = &'static str> {
    pages::PAGES.iter().map(|&(code, _)| code)
}

/// The form diagnostics are printed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorFormat {
    /// For people: the source line, labeled spans, notes and help.
    #[default]
    Human,
    /// For tools: one JSON object per diagnostic, each on its own line.
    Json,
}

impl ErrorFormat {
    /// The formats by their `--error-format` names.
    pub const NAMES: [(&'static str, ErrorFormat); 2] = [("human", ErrorFormat::Human), ("json", ErrorFormat::Json)];

    pub fn parse(name: &str) -> Option<ErrorFormat> {
        ErrorFormat::NAMES.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
    }
}

/// Every diagnostic of a run against the source `src` named `file`.
pub fn render(diags: &[Diagnostic], file: &str, src: &str, format: ErrorFormat, color: bool) -> String {
    match format {
        ErrorFormat::Human => kiln_frontend::render_diagnostics(diags, file, src, color),
        ErrorFormat::Json => diags.iter().map(|d| format!("{}\n", json(d, file, src))).collect(),
    }
}

/// An error that names no place in the source, with an optional note.
pub fn render_message(format: ErrorFormat, message: &str, note: Option<&str>) -> String {
    let rendered = format!("error: {message}\n{}", note.map(|n| format!("note: {n}\n")).unwrap_or_default());
    match format {
        ErrorFormat::Human => rendered,
        ErrorFormat::Json => {
            let notes: Vec<&str> = note.into_iter().collect();
            let object = json!({
                "level": "error", "code": null, "message": message, "spans": [],
                "notes": notes, "help": null, "rendered": rendered,
            });
            format!("{object}\n")
        }
    }
}

fn json(d: &Diagnostic, file: &str, src: &str) -> Value {
    let spans: Vec<Value> = d
        .labels
        .iter()
        .map(|l| {
            let (start, end) = (clamp(src, l.span.start), clamp(src, l.span.end.max(l.span.start)));
            let ((line_start, column_start), (line_end, column_end)) = (position(src, start), position(src, end));
            json!({
                "file_name": file,
                "byte_start": start, "byte_end": end,
                "line_start": line_start, "column_start": column_start,
                "line_end": line_end, "column_end": column_end,
                "is_primary": l.primary, "label": l.message,
            })
        })
        .collect();
    json!({
        "level": d.severity.name(),
        "code": d.code,
        "message": d.message,
        "spans": spans,
        "notes": d.notes,
        "help": d.help,
        "rendered": kiln_frontend::render_diagnostic(d, file, src, false),
    })
}

/// A span's offset within `src`, moved back to a character boundary.
fn clamp(src: &str, offset: u32) -> usize {
    let mut i = (offset as usize).min(src.len());
    while !src.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The 1-based line and column (in characters) of byte `offset` of `src`.
fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::Span;

    #[test]
    fn json_spans_count_lines_and_characters_from_one() {
        let src = "fn f() {\n  ünknown\n}\n";
        let start = src.find('ü').unwrap();
        let d = Diagnostic::error("E0101", "cannot find value `ünknown` in this scope")
            .at(Span::new(start, start + "ünknown".len()), "not found");
        let v = json(&d, "m.kn", src);
        let span = &v["spans"][0];
        assert_eq!((span["line_start"].as_u64(), span["column_start"].as_u64()), (Some(2), Some(3)));
        assert_eq!((span["line_end"].as_u64(), span["column_end"].as_u64()), (Some(2), Some(10)));
        assert_eq!(span["byte_end"].as_u64(), Some((start + 8) as u64));
        assert_eq!(v["level"], "error");
        assert!(v["rendered"].as_str().unwrap().contains("error[E0101]"));
    }
}
