//! Project rules that are tests, not wishes: the crate layering of docs/layout.md, and every
//! diagnostic code documented in docs/errors/ and exercised by an error filetest.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The kiln crates each crate may depend on, and whether it may have other dependencies.
const LAYERS: &[(&str, &[&str], bool)] = &[
    ("manifest", &[], true),
    ("ir", &[], false),
    ("frontend", &["kiln-ir"], true),
    ("passes", &["kiln-ir"], true),
    ("codegen", &["kiln-ir", "kiln-manifest"], true),
    ("runtime", &["kiln-manifest"], true),
    (".", &["kiln-ir", "kiln-frontend", "kiln-passes", "kiln-codegen", "kiln-runtime"], true),
];

#[test]
fn crates_depend_only_on_lower_layers() {
    for (dir, allowed, externals) in LAYERS {
        let text = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
        let manifest: toml::Table = text.parse().unwrap();
        let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        for name in deps.keys() {
            if name.starts_with("kiln") {
                assert!(allowed.contains(&name.as_str()), "{dir} must not depend on {name}");
            } else {
                assert!(externals, "{dir} may depend on std only, not {name}");
            }
        }
    }
}

/// The artifact contract (format name, entry-point and descriptor symbols, launch-plan types)
/// is spelled in kiln-manifest alone: the compiler and the runtime name it, never restate it.
#[test]
fn the_artifact_contract_is_written_once() {
    let restated = ["\"kiln-manifest\"", "kiln_abi", "set_parallel_for\"", "enum LaunchArg", "struct Gemm"];
    for dir in ["codegen/src", "runtime/src", "src"] {
        for path in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&path).unwrap();
            for code in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for r in restated {
                    assert!(!code.contains(r), "{} restates the artifact contract: {code}", path.display());
                }
            }
        }
    }
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn codes_in(dir: &Path, codes: &mut BTreeSet<String>) {
    for path in rust_files(dir) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("\"E") {
            let code = &text[i + 1..(i + 6).min(text.len())];
            if code.len() == 5 && code[1..].chars().all(|c| c.is_ascii_digit()) && text[i + 6..].starts_with('"') {
                codes.insert(code.to_string());
            }
        }
    }
}

#[test]
fn every_diagnostic_code_is_documented_and_tested() {
    let mut codes = BTreeSet::new();
    for dir in ["ir/src", "frontend/src", "src"] {
        codes_in(&root().join(dir), &mut codes);
    }
    assert!(codes.len() >= 30, "found {} codes", codes.len());
    let filetests: Vec<String> = std::fs::read_dir(root().join("tests/errors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for code in &codes {
        let doc = root().join("docs/errors").join(format!("{code}.md"));
        let text = std::fs::read_to_string(&doc).unwrap_or_else(|_| panic!("{code} has no {}", doc.display()));
        assert!(text.starts_with(&format!("# {code}: ")), "{code}.md starts with its title");
        if code != "E9999" {
            assert!(text.contains("```"), "{code}.md shows an example");
        }
        // E0900 (IR text), E0305 (a frontend without autodiff) and E9999 (compiler bugs) cannot
        // come from `kiln check`, so they have no source-level filetest.
        if !["E0900", "E0305", "E9999"].contains(&code.as_str()) {
            assert!(filetests.iter().any(|f| f.starts_with(code.as_str())), "{code} has no filetest in tests/errors");
        }
    }
    for entry in std::fs::read_dir(root().join("docs/errors")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "README.md" {
            assert!(codes.contains(name.trim_end_matches(".md")), "docs/errors/{name} documents a code no longer used");
        }
    }
}

#[test]
fn readme_language_example_compiles() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("## The language by example").nth(1).expect("README has the language section");
    let code = section.split("```").nth(1).expect("a code block");
    let source = kiln::Source { name: "readme.kn".into(), text: code.to_string() };
    let module = kiln::check(&source, "mlp").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let names: Vec<&str> = module.funcs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["loss", "forward", "train_step"]);
}
