//! The lexer: source text to tokens with byte spans.

use kiln_ir::{Diagnostic, Span};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(u64),
    Float(f64),
    /// A string literal's contents, between double quotes (no escapes, no line breaks).
    Str(String),
    Punct(&'static str),
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(v) => format!("`{v}`"),
            Tok::Float(v) => format!("`{v}`"),
            Tok::Str(v) => format!("`\"{v}\"`"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "end of file".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Punctuation, longest first so that `**` wins over `*`.
const PUNCT: &[&str] = &[
    "...", "->", "**", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ":", ";", "=", "+", "-", "*", "/",
    "%", "@", "<", ">", ".",
];

/// Splits source text into tokens, ending with [`Tok::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let bytes = src.as_bytes();
    let mut tokens = vec![];
    // A UTF-8 byte order mark, as some editors write, is not part of the program.
    let mut i = if src.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if src[i..].starts_with("//") {
            i += src[i..].find('\n').unwrap_or(src.len() - i);
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token { tok: Tok::Ident(src[start..i].to_string()), span: Span::new(start, i) });
        } else if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let (tok, end) = number(src, i)?;
            tokens.push(Token { tok, span: Span::new(i, end) });
            i = end;
        } else if c == b'"' {
            let (tok, end) = string(src, i)?;
            tokens.push(Token { tok, span: Span::new(i, end) });
            i = end;
        } else if let Some(p) = PUNCT.iter().find(|p| src[i..].starts_with(**p)) {
            tokens.push(Token { tok: Tok::Punct(p), span: Span::new(i, i + p.len()) });
            i += p.len();
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            let end = i + ch.len_utf8();
            return Err(Diagnostic::error("E0001", format!("unexpected character `{}`", ch.escape_debug()))
                .at(Span::new(i, end), "not valid in a kiln program"));
        }
    }
    tokens.push(Token { tok: Tok::Eof, span: Span::new(src.len(), src.len()) });
    Ok(tokens)
}

/// Reads a string literal starting at the quote at `start`: the text up to the next quote on
/// the same line. Strings name options (`mode="clip"`); they need no escapes.
fn string(src: &str, start: usize) -> Result<(Tok, usize), Diagnostic> {
    let rest = &src[start + 1..];
    match rest.find(['"', '\n', '\\']) {
        Some(n) if rest.as_bytes()[n] == b'"' => Ok((Tok::Str(rest[..n].to_string()), start + n + 2)),
        Some(n) if rest.as_bytes()[n] == b'\\' => Err(Diagnostic::error("E0005", "escapes are not allowed in strings")
            .at(Span::new(start + 1 + n, start + 2 + n), "a backslash")
            .note("strings name options such as `mode=\"clip\"`")),
        n => {
            let end = start + 1 + n.unwrap_or(rest.len());
            Err(Diagnostic::error("E0005", "unterminated string")
                .at(Span::new(start, end), "no closing `\"` on this line"))
        }
    }
}

/// Reads a number literal starting at `start`: digits, an optional fraction and exponent.
/// Integers without a fraction or exponent are `Int`.
fn number(src: &str, start: usize) -> Result<(Tok, usize), Diagnostic> {
    let bytes = src.as_bytes();
    let digits = |mut i: usize| {
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    let mut is_float = false;
    // A fraction: the point and any digits (`1.`, `1.5`), or the point before an exponent
    // (`1.e5`), but not a point before a name.
    let exponent_at = |j: usize| {
        matches!(bytes.get(j), Some(b'e' | b'E'))
            && match bytes.get(j + 1) {
                Some(b'+' | b'-') => bytes.get(j + 2).is_some_and(u8::is_ascii_digit),
                b => b.is_some_and(u8::is_ascii_digit),
            }
    };
    let name_after = |j: usize| bytes.get(j).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') && !exponent_at(j);
    if i < bytes.len() && bytes[i] == b'.' && !name_after(i + 1) {
        is_float = true;
        i = digits(i + 1);
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        is_float = true;
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        i = digits(i);
        if i == exp_start {
            return Err(Diagnostic::error("E0002", "malformed number literal")
                .at(Span::new(start, i), "the exponent has no digits"));
        }
    }
    if i < bytes.len() && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
        let mut end = i;
        while end < bytes.len() && bytes[end].is_ascii_alphanumeric() {
            end += 1;
        }
        return Err(Diagnostic::error("E0002", "malformed number literal")
            .at(Span::new(start, end), "a number cannot be followed by letters")
            .help("names start with a letter or `_`"));
    }
    let text: String = src[start..i].chars().filter(|&c| c != '_').collect();
    let tok = if is_float {
        Tok::Float(text.parse().map_err(|_| {
            Diagnostic::error("E0002", "malformed number literal").at(Span::new(start, i), "not a valid float")
        })?)
    } else {
        Tok::Int(text.parse().map_err(|_| {
            Diagnostic::error("E0002", "integer literal is too large")
                .at(Span::new(start, i), "does not fit in 64 bits")
        })?)
    };
    Ok((tok, i))
}

#[cfg(test)]
mod tests {
    use super::{lex, Tok};

    fn tokens(src: &str) -> Vec<Tok> {
        lex(src).unwrap_or_else(|d| panic!("{src}: {}", d.message)).into_iter().map(|t| t.tok).collect()
    }

    /// Every float form Python and numpy read, `1.e5` included; a point before a name is not
    /// a fraction.
    #[test]
    fn floats_take_every_python_form() {
        for (text, value) in [("1.", 1.0), ("1.5", 1.5), ("1.e5", 1e5), ("1.E-2", 0.01), ("1e5", 1e5), (".5", 0.5)] {
            assert_eq!(tokens(text), [Tok::Float(value), Tok::Eof], "{text}");
        }
        assert_eq!(tokens("1.x"), [Tok::Int(1), Tok::Punct("."), Tok::Ident("x".into()), Tok::Eof]);
    }

    /// Strings run to the next quote on their line, without escapes.
    #[test]
    fn strings_are_quoted_text_on_one_line() {
        assert_eq!(
            tokens("mode=\"clip\""),
            [Tok::Ident("mode".into()), Tok::Punct("="), Tok::Str("clip".into()), Tok::Eof]
        );
        for bad in ["\"clip", "\"a\nb\"", "\"a\\\"\""] {
            assert_eq!(lex(bad).unwrap_err().code, "E0005", "{bad}");
        }
    }

    /// A UTF-8 byte order mark is skipped; spans still count it.
    #[test]
    fn a_byte_order_mark_is_skipped() {
        let t = lex("\u{feff}fn").unwrap();
        assert_eq!(t[0].tok, Tok::Ident("fn".into()));
        assert_eq!(t[0].span.start, 3);
    }
}
