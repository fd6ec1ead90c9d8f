//! Records the CPU names LLVM 22 knows for each supported architecture, so that kiln can
//! refuse an unknown `--target-cpu` with a clear message: LLVM itself only prints a warning and
//! may then abort the whole process. The names come from `llc -mcpu=help` of the LLVM that
//! kiln links against (LLVM_SYS_221_PREFIX, set in .cargo/config.toml).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

const ARCHES: &[(&str, &str)] = &[("X86_64", "x86_64-unknown-linux-gnu"), ("AARCH64", "aarch64-unknown-linux-gnu")];

fn main() {
    println!("cargo:rerun-if-env-changed=LLVM_SYS_221_PREFIX");
    let prefix = std::env::var("LLVM_SYS_221_PREFIX").unwrap_or_else(|_| "/usr/lib/llvm-22".into());
    let llc = PathBuf::from(prefix).join("bin/llc");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("cpus.rs");
    let mut file = std::fs::File::create(&out).unwrap();
    for (name, triple) in ARCHES {
        let output =
            Command::new(&llc).arg(format!("-mtriple={triple}")).arg("-mcpu=help").output().unwrap_or_else(|e| {
                panic!("cannot run {} (install llvm-22 with scripts/setup.sh): {e}", llc.display())
            });
        let text = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
        let cpus: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("Available CPUs"))
            .skip(1)
            .take_while(|l| !l.starts_with("Available features"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(!cpus.is_empty(), "no CPU list from {} for {triple}", llc.display());
        writeln!(file, "/// CPU names LLVM knows for {triple}.\npub const {name}_CPUS: &[&str] = &{cpus:?};").unwrap();
    }
}
