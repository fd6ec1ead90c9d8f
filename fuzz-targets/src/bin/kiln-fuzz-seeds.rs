//! Writes each fuzz target's seeds into DIR/<target>/ (the corpus folders scripts/fuzz.sh
//! hands libFuzzer), one file per seed.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: kiln-fuzz-seeds DIR");
        std::process::exit(2);
    };
    for target in kiln_fuzz_targets::TARGETS {
        let folder = std::path::Path::new(&dir).join(target.name);
        std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("cannot create {}: {e}", folder.display()));
        let seeds = kiln_fuzz_targets::seeds(target.name);
        for (n, seed) in seeds.iter().enumerate() {
            let path = folder.join(format!("seed-{n:04}"));
            std::fs::write(&path, seed).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        println!("{}: {} seeds", target.name, seeds.len());
    }
}
