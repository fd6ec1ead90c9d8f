//! No input makes kiln panic or hang: truncated and garbled versions of every example and
//! every error filetest each get either a clean result or a diagnostic with a code and a span
//! (exit code 1 from the CLI), never an internal error.

mod common;

use kiln::{Error, Source};
use kiln_ir::gen::Rng;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

fn corpus() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![];
    for dir in ["examples", "tests/errors", "tests/run"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "kn")) {
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

/// Characters that garbling inserts: the language's punctuation, digits, letters, and a few
/// that are not part of it.
const NOISE: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    ":",
    "=",
    "+",
    "-",
    "*",
    "/",
    "@",
    "<",
    ">",
    "**",
    "0",
    "1",
    "-1",
    "999999999999",
    "1e400",
    "2.5",
    "x",
    "fn",
    "let",
    "export",
    "as",
    "f32",
    "i32",
    "bool",
    "sum",
    "reshape",
    "axis=",
    "$",
    "é",
    "\"",
    "\n",
];

fn garble(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 if at < chars.len() => {
                let n = 1 + rng.below(5).min(chars.len() - at);
                chars.drain(at..(at + n).min(chars.len()));
            }
            1 if at < chars.len() => {
                let noise: Vec<char> = rng.pick(NOISE).chars().collect();
                chars.splice(at..at + 1, noise);
            }
            _ => {
                let noise: Vec<char> = rng.pick(NOISE).chars().collect();
                chars.splice(at..at, noise);
            }
        }
    }
    chars.into_iter().collect()
}

/// Checks `text`; Err with a description if kiln panicked, hung or reported an internal error.
fn check_one(name: &str, text: String) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let src_copy = text.clone();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let source = Source { name: "input.kn".into(), text: src_copy };
            let outcome = std::panic::catch_unwind(|| match kiln::check(&source, "m") {
                Ok(_) => Ok(()),
                Err(e @ Error::Source { .. })
                    if e.diagnostic().is_some_and(|d| d.code != "E9999" && !d.labels.is_empty()) =>
                {
                    Ok(())
                }
                Err(e) => Err(e.render(false)),
            });
            let _ = tx.send(outcome.unwrap_or_else(|_| Err("panicked".into())));
        })
        .expect("spawn");
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{name}: {e}\n--- input ---\n{text}")),
        Err(_) => Err(format!("{name}: no answer within 20 s (hang)\n--- input ---\n{text}")),
    }
}

#[test]
fn truncated_inputs_never_crash() {
    let mut failures = vec![];
    for (name, text) in corpus() {
        let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        let step = (cuts.len() / 150).max(1);
        for &cut in cuts.iter().step_by(step) {
            if let Err(e) = check_one(&name, text[..cut].to_string()) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{} failures, first:\n{}", failures.len(), failures[0]);
}

#[test]
fn garbled_inputs_never_crash() {
    let mut rng = Rng::new(common::seed());
    let mut failures = vec![];
    for (name, text) in corpus() {
        for _ in 0..150 {
            if let Err(e) = check_one(&name, garble(&mut rng, &text)) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{} failures, first:\n{}", failures.len(), failures[0]);
}

#[test]
fn cli_reports_bad_input_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let mut rng = Rng::new(common::seed());
    for (name, text) in corpus().into_iter().step_by(5) {
        let bad = garble(&mut rng, &text[..text.len() / 2]);
        let path = dir.path().join(&name);
        std::fs::write(&path, &bad).unwrap();
        let out = std::process::Command::new(kiln).arg("check").arg(&path).output().unwrap();
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(code == Some(0) || code == Some(1), "{name}: exit {code:?}\n{stderr}\n{bad}");
        if code == Some(1) {
            assert!(stderr.contains("error[E"), "{name}: {stderr}");
        }
    }
    // Not UTF-8, and missing: usage errors with exit code 1.
    let binary = dir.path().join("binary.kn");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    for path in [binary, dir.path().join("missing.kn")] {
        let out = std::process::Command::new(kiln).arg("check").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    }
}
