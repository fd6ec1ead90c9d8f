//! Embeds the errors pages (docs/errors/CODE.md) in the kiln binary, for `kiln explain CODE`:
//! `$OUT_DIR/error_pages.rs` lists every page by code, in code order.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/errors");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut pages: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("docs/errors exists")
        .map(|e| e.expect("a folder entry").path())
        .filter_map(|p| {
            let code = p.file_stem()?.to_str()?.to_string();
            let is_page = p.extension()? == "md" && code != "README";
            is_page.then(|| (code, p.display().to_string()))
        })
        .collect();
    pages.sort();
    let rows: String = pages.iter().map(|(code, path)| format!("    ({code:?}, include_str!({path:?})),\n")).collect();
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("error_pages.rs");
    std::fs::write(out, format!("pub static PAGES: &[(&str, &str)] = &[\n{rows}];\n")).expect("OUT_DIR is writable");
}
