//! Renders diagnostics the way rustc does: code, message, the user's line with labeled spans,
//! notes and help.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel, Severity as CsSeverity};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::Buffer};
use kiln_ir::{Diagnostic, Severity};

/// Renders `diag` against the source `src` (named `file_name` in the output), with ANSI colors
/// when `color` is set.
pub fn render_diagnostic(diag: &Diagnostic, file_name: &str, src: &str, color: bool) -> String {
    let file = SimpleFile::new(file_name, src);
    let clamp = |r: std::ops::Range<usize>| {
        let mut start = r.start.min(src.len());
        let mut end = r.end.clamp(start, src.len());
        while !src.is_char_boundary(start) {
            start -= 1;
        }
        while !src.is_char_boundary(end) {
            end += 1;
        }
        start..end
    };
    let labels = diag
        .labels
        .iter()
        .map(|l| {
            let label = if l.primary {
                CsLabel::primary((), clamp(l.span.range()))
            } else {
                CsLabel::secondary((), clamp(l.span.range()))
            };
            label.with_message(&l.message)
        })
        .collect();
    let mut notes: Vec<String> = diag.notes.iter().map(|n| format!("note: {n}")).collect();
    if let Some(help) = &diag.help {
        notes.push(format!("help: {help}"));
    }
    let severity = match diag.severity {
        Severity::Error => CsSeverity::Error,
        Severity::Warning => CsSeverity::Warning,
    };
    let cs = CsDiagnostic::new(severity)
        .with_code(diag.code)
        .with_message(&diag.message)
        .with_labels(labels)
        .with_notes(notes);
    let mut buffer = if color { Buffer::ansi() } else { Buffer::no_color() };
    let config = term::Config::default();
    if term::emit(&mut buffer, &config, &file, &cs).is_err() {
        return format!("{diag}\n");
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

/// Renders every diagnostic of a run in order, closing with a count when more than one error
/// stopped it (and saying so when the run stopped at [`crate::MAX_ERRORS`]).
pub fn render_diagnostics(diags: &[Diagnostic], file_name: &str, src: &str, color: bool) -> String {
    let mut out: String = diags.iter().map(|d| render_diagnostic(d, file_name, src, color)).collect();
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    if errors >= crate::MAX_ERRORS {
        out.push_str(&format!("error: stopped after {errors} errors; fix these and check again\n"));
    } else if errors > 1 {
        out.push_str(&format!("error: {errors} errors in `{file_name}`\n"));
    }
    out
}
