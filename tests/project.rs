//! Project rules that are tests, not wishes: the crate layering of docs/layout.md, and every
//! diagnostic code documented in docs/errors/ and exercised by an error filetest.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A crate's folder, the kiln crates it may depend on, and the other crates it may depend on
/// (`None`: any).
type Layer = (&'static str, &'static [&'static str], Option<&'static [&'static str]>);

/// The crates' layering. kiln-ir, which every stage and the interpreter share, takes only `libm`
/// (erf) and `half` (f16 and bf16 values and their rounding).
const LAYERS: &[Layer] = &[
    ("manifest", &[], None),
    ("ir", &[], Some(&["libm", "half"])),
    ("frontend", &["kiln-ir"], None),
    ("passes", &["kiln-ir"], None),
    ("codegen", &["kiln-ir", "kiln-manifest"], None),
    ("runtime", &["kiln-manifest"], None),
    (".", &["kiln-ir", "kiln-frontend", "kiln-passes", "kiln-codegen", "kiln-runtime", "kiln-onnx"], None),
    ("onnx", &["kiln-ir", "kiln-frontend"], None),
    ("python", &["kiln", "kiln-runtime"], None),
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
            } else if let Some(externals) = externals {
                assert!(externals.contains(&name.as_str()), "{dir} may depend on {externals:?} only, not {name}");
            }
        }
    }
}

/// The artifact contract (format name, entry-point and descriptor symbols, launch-plan types)
/// is spelled in kiln-manifest alone: the compiler and the runtime name it, never restate it.
#[test]
fn the_artifact_contract_is_written_once() {
    let restated = ["\"kiln-manifest\"", "kiln_abi", "set_parallel_for\"", "enum LaunchArg", "struct Gemm"];
    for dir in ["codegen/src", "runtime/src", "src", "python/src"] {
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

/// The modules of kiln-codegen import each other without a cycle: the CPU and GPU back ends
/// are siblings over the shared front half, and the pipeline alone sees both (issue #16).
/// A module is a file of codegen/src or a folder (gpu/, schedule/); an import is a
/// `crate::NAME` in code (not in comments), items re-exported at the crate root counting as
/// their module's.
#[test]
fn codegen_modules_import_each_other_without_a_cycle() {
    let src = root().join("codegen/src");
    let module_of = |path: &Path| -> String {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        first.trim_end_matches(".rs").to_string()
    };
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    // `pub use module::{A, B};` at the root: which module each re-exported item is.
    let mut reexported = std::collections::BTreeMap::new();
    for line in lib.lines().filter_map(|l| l.strip_prefix("pub use ")) {
        let (module, items) = line.trim_end_matches(';').split_once("::").unwrap();
        for item in items.trim_matches(['{', '}']).split(',') {
            reexported.insert(item.trim().to_string(), module.to_string());
        }
    }
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    for path in rust_files(&src).into_iter().filter(|p| !p.ends_with("lib.rs")) {
        let from = module_of(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        for code in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let mut names = vec![];
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    names.extend(group.split('}').next().unwrap().split(',').map(|n| n.trim().to_string()));
                } else {
                    names.push(rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap().to_string());
                }
            }
            for name in names {
                let to = reexported.get(&name).cloned().unwrap_or(name);
                if to != from && !to.is_empty() {
                    edges.insert((from.clone(), to));
                }
            }
        }
    }
    // Depth-first search for a cycle, reporting its path.
    fn visit(
        node: &str,
        edges: &BTreeSet<(String, String)>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].iter().cloned().chain([node.to_string()]).collect());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(cycle) = visit(to, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    assert!(edges.contains(&("pipeline".to_string(), "gpu".to_string())), "the check sees imports: {edges:?}");
    let mut done = BTreeSet::new();
    for (from, _) in &edges {
        if let Some(cycle) = visit(from, &edges, &mut vec![], &mut done) {
            panic!("codegen modules import each other in a circle: {}", cycle.join(" -> "));
        }
    }
}

/// No document or source file points outside the repository (the shared notes beside it are
/// not shipped): what kiln relies on is in docs/.
#[test]
fn nothing_points_outside_the_repository() {
    let mut files = vec![root().join("README.md")];
    for dir in ["docs", "codegen/src", "runtime/src", "passes/src", "frontend/src", "ir/src", "manifest/src", "src"] {
        files.extend(rust_files(&root().join(dir)));
    }
    files.extend(std::fs::read_dir(root().join("docs")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("../shared"), "{} points outside the repository", path.display());
    }
}

/// Code generation changes the module in memory (issue #16): outside tests, the module is
/// printed only for `--dump-after` (context.rs), and MLIR is parsed only where it is emitted
/// (front.rs), for the transform script of the loop schedule (cpu.rs) and for the launch
/// templates of the GPU's block reductions (gpu/reduce.rs): text kiln writes, never a printed
/// module read back.
#[test]
fn codegen_reads_no_printed_module_back() {
    let allowed: &[(&str, &str)] = &[
        ("as_operation().to_string()", "context.rs"),
        ("mlir.parse(", "front.rs"),
        ("mlir.parse(", "reduce.rs"),
        // `Mlir::parse` itself, and the loop schedule.
        ("Module::parse(", "context.rs"),
        ("Module::parse(", "cpu.rs"),
    ];
    for path in rust_files(&root().join("codegen/src")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for pattern in ["as_operation().to_string()", "mlir.parse(", "Module::parse(", "edit_text("] {
                assert!(
                    !line.contains(pattern) || allowed.contains(&(pattern, file.as_str())),
                    "{}: `{pattern}` reads or rewrites printed MLIR: {line}",
                    path.display()
                );
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
        for (i, _) in text.match_indices('"') {
            let code = text.get(i + 1..i + 6).unwrap_or_default();
            let is_code = code.starts_with(['E', 'W']) && code[1..].chars().all(|c| c.is_ascii_digit());
            if code.len() == 5 && is_code && text[i + 6..].starts_with('"') {
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
    // The ONNX importer's codes are about models, not sources: python/tests/test_onnx.py
    // makes each (with onnx's helper API) and checks its code.
    let mut onnx_codes = BTreeSet::new();
    codes_in(&root().join("onnx/src"), &mut onnx_codes);
    let onnx_tests = std::fs::read_to_string(root().join("python/tests/test_onnx.py")).unwrap();
    for code in &onnx_codes {
        assert!(onnx_tests.contains(&format!("\"{code}\"")), "{code} is not checked by python/tests/test_onnx.py");
    }
    assert!(onnx_codes.len() >= 6, "found {} ONNX codes", onnx_codes.len());
    assert!(codes.len() >= 30, "found {} codes", codes.len());
    let filetests: Vec<String> = std::fs::read_dir(root().join("tests/errors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for code in codes.iter().chain(&onnx_codes) {
        let doc = root().join("docs/errors").join(format!("{code}.md"));
        let text = std::fs::read_to_string(&doc).unwrap_or_else(|_| panic!("{code} has no {}", doc.display()));
        assert!(text.starts_with(&format!("# {code}: ")), "{code}.md starts with its title");
        if code != "E9999" {
            assert!(text.contains("```"), "{code}.md shows an example");
        }
        // E0900 (IR text), E0305 (a frontend without autodiff) and E9999 (compiler bugs) cannot
        // come from `kiln check`, so they have no source-level filetest.
        if !["E0900", "E0305", "E9999"].contains(&code.as_str()) && !onnx_codes.contains(code) {
            assert!(filetests.iter().any(|f| f.starts_with(code.as_str())), "{code} has no filetest in tests/errors");
        }
    }
    for entry in std::fs::read_dir(root().join("docs/errors")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "README.md" {
            let code = name.trim_end_matches(".md");
            assert!(
                codes.contains(code) || onnx_codes.contains(code),
                "docs/errors/{name} documents a code no longer used"
            );
        }
    }
}

/// The README lists every builtin, the op table's unary ones in table order (so a row added to
/// the table fails here until the README names it).
#[test]
fn readme_lists_every_builtin() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("- **Builtins**: ").nth(1).expect("README lists the builtins");
    let section = section.split("\n- **").next().unwrap();
    let unary: Vec<&str> = kiln_ir::UnaryOp::ALL.iter().filter(|op| op.is_builtin()).map(|op| op.name()).collect();
    assert!(section.starts_with(&format!("`{} relu`", unary.join(" "))), "README: {section}");
    for name in kiln_frontend::builtin_names() {
        let listed = section.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == name);
        assert!(listed, "README's builtins lack `{name}`");
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

/// The README's command reference is what the binaries print for `--help`, for every
/// subcommand of kiln and for kiln-gpu-check (so no flag goes undocumented). With
/// `KILN_BLESS=1` the test rewrites the section instead.
#[test]
fn readme_documents_every_flag_of_every_command() {
    const BEGIN: &str =
        "<!-- commands: what each binary's --help prints; tests/project.rs checks it, KILN_BLESS=1 rewrites it -->\n";
    const END: &str = "<!-- end of commands -->\n";
    let kiln = Path::new(env!("CARGO_BIN_EXE_kiln"));
    let gpu_check = kiln.with_file_name("kiln-gpu-check");
    assert!(gpu_check.is_file(), "{} is missing: build it with `cargo build --workspace --bins`", gpu_check.display());
    let help = |program: &Path, args: &[&str]| {
        let out = std::process::Command::new(program).args(args).output().unwrap();
        assert!(out.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(kiln, &["--help"]);
    let subcommands: Vec<&str> = top
        .split("Commands:\n")
        .nth(1)
        .expect("kiln --help lists its commands")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|&c| c != "help")
        .collect();
    assert!(subcommands.len() >= 6, "{subcommands:?}");
    let mut section = String::from(BEGIN);
    let mut block = |title: &str, text: &str| {
        section.push_str(&format!("\n#### `{title}`\n\n```text\n{}\n```\n", text.trim_end()));
    };
    block("kiln", &top);
    for c in &subcommands {
        block(&format!("kiln {c}"), &help(kiln, &[c, "--help"]));
    }
    block("kiln-gpu-check", &help(&gpu_check, &["--help"]));
    section.push('\n');
    section.push_str(END);
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme.find(BEGIN).expect("the README has the commands section");
    let end = readme.find(END).expect("the commands section ends") + END.len();
    if std::env::var_os("KILN_BLESS").is_some() {
        std::fs::write(&path, format!("{}{section}{}", &readme[..start], &readme[end..])).unwrap();
    } else {
        assert!(readme[start..end] == section, "README's command reference is stale: run with KILN_BLESS=1");
    }
}
