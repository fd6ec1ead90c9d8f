//! The training example: examples/train trains a spiral classifier with the compiled
//! value_and_grad and SGD step. Within 3000 steps the loss must fall below 0.05 (from about
//! 0.8) and the training accuracy reach 95%.

use std::path::Path;
use std::process::Command;

#[test]
fn training_example_learns_the_spirals() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let build = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("build")
        .arg(root.join("examples/train/train.kn"))
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let exe = dir.path().join("train");
    let cc = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-O2", "-o"])
        .arg(&exe)
        .arg(root.join("examples/train/main.c"))
        .arg(dir.path().join("train.o"))
        .arg("-I")
        .arg(dir.path())
        .arg("-lm")
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let run = Command::new(&exe).arg("3000").output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    // "final loss 0.0026 (from 0.8128), accuracy 1.000"
    let words: Vec<&str> = last.split_whitespace().collect();
    let loss: f32 = words[2].parse().unwrap();
    let first: f32 = words[4].trim_start_matches('(').trim_end_matches("),").parse().unwrap();
    let accuracy: f32 = words[6].parse().unwrap();
    assert!(first > 0.5, "{stdout}");
    assert!(loss < 0.05, "loss {loss} after 3000 steps:\n{stdout}");
    assert!(accuracy >= 0.95, "accuracy {accuracy}:\n{stdout}");
}
