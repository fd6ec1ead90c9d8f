//! The build-script API, in the spirit of the `cc` crate:
//!
//! ```no_run
//! // build.rs
//! kiln::Build::new().file("model.kn").compile("model");
//! ```
//!
//! compiles each file into its own module (named by the file stem, which prefixes its symbols),
//! archives all objects into `lib<name>.a` in `OUT_DIR`, writes each module's C header, Rust
//! bindings (`include!(concat!(env!("OUT_DIR"), "/model.rs"))`) and manifest there, and tells
//! Cargo to link the archive and to rerun when a source changes.

use crate::{build, static_library, Error, Options, Source};
use kiln_codegen::Target;
use std::path::{Path, PathBuf};

/// A build of one or more `.kn` files into one static library.
#[derive(Clone, Debug)]
pub struct Build {
    files: Vec<PathBuf>,
    opt_level: u8,
    target_cpu: Option<String>,
    out_dir: Option<PathBuf>,
    cargo_metadata: bool,
}

impl Default for Build {
    fn default() -> Self {
        Build::new()
    }
}

impl Build {
    /// A build at -O2 for Cargo's `TARGET` with its baseline CPU, into `OUT_DIR`.
    pub fn new() -> Build {
        Build { files: vec![], opt_level: 2, target_cpu: None, out_dir: None, cargo_metadata: true }
    }

    /// Adds a source file; each file becomes a module named by its stem.
    pub fn file(&mut self, path: impl AsRef<Path>) -> &mut Build {
        self.files.push(path.as_ref().to_path_buf());
        self
    }

    /// Optimization level 0 to 3 (default 2, whatever Cargo's profile).
    pub fn opt_level(&mut self, level: u8) -> &mut Build {
        self.opt_level = level.min(3);
        self
    }

    /// An LLVM CPU name, or `native`.
    pub fn target_cpu(&mut self, cpu: &str) -> &mut Build {
        self.target_cpu = Some(cpu.to_string());
        self
    }

    /// Where to write the outputs (default: the `OUT_DIR` Cargo gives build scripts).
    pub fn out_dir(&mut self, dir: impl AsRef<Path>) -> &mut Build {
        self.out_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Whether to print `cargo:` lines (default true).
    pub fn cargo_metadata(&mut self, on: bool) -> &mut Build {
        self.cargo_metadata = on;
        self
    }

    /// Compiles everything into `lib<name>.a`, panicking with the rendered diagnostic on
    /// failure (so that Cargo shows it), as the `cc` crate does.
    pub fn compile(&self, name: &str) {
        if let Err(e) = self.try_compile(name) {
            panic!("\n{}", e.render(false));
        }
    }

    /// Compiles everything into `lib<name>.a` and returns the paths written.
    pub fn try_compile(&self, name: &str) -> Result<Vec<PathBuf>, Error> {
        if !kiln_ir::func::is_identifier(name) {
            return Err(Error::Usage(format!("library name `{name}` is not a C identifier")));
        }
        let out_dir = match &self.out_dir {
            Some(d) => d.clone(),
            None => PathBuf::from(
                std::env::var_os("OUT_DIR")
                    .ok_or_else(|| Error::Usage("OUT_DIR is not set: call out_dir() outside build scripts".into()))?,
            ),
        };
        let triple = std::env::var("TARGET").ok();
        let target = Target::new(triple.as_deref(), self.target_cpu.as_deref()).map_err(Error::Usage)?;
        let options = Options { opt_level: self.opt_level, target, ..Options::default() };
        let mut objects = vec![];
        let mut written = vec![];
        for path in &self.files {
            if self.cargo_metadata {
                println!("cargo:rerun-if-changed={}", path.display());
            }
            let source = Source::read(path)?;
            let out = build(&source, &options)?;
            if objects.iter().any(|(n, _): &(String, Vec<u8>)| *n == format!("{}.o", out.module_name)) {
                return Err(Error::Usage(format!("two files make module `{}`; rename one", out.module_name)));
            }
            written.extend(crate::write_output(&out, &out_dir)?);
            objects.extend(out.files.into_iter().filter(|(n, _)| n.ends_with(".o")));
        }
        let archive = out_dir.join(format!("lib{name}.a"));
        std::fs::write(&archive, static_library(objects)?)
            .map_err(|e| Error::Usage(format!("cannot write `{}`: {e}", archive.display())))?;
        written.push(archive);
        if self.cargo_metadata {
            println!("cargo:rustc-link-search=native={}", out_dir.display());
            println!("cargo:rustc-link-lib=static={name}");
            println!("cargo:rustc-link-lib=m");
        }
        Ok(written)
    }
}
