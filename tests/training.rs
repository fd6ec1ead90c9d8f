//! The training examples, built with kiln, linked with their C drivers and run:
//! examples/train trains a spiral classifier (an MLP), examples/cnn a convolutional network
//! telling horizontal bars from vertical ones and examples/gru a character-level GRU language
//! model (the gradient through a scan), each with its compiled value_and_grad and SGD step;
//! examples/gpt trains a small transformer with AdamW and is checked step by step against JAX.
//! The loss must fall well below where it starts and the accuracy reach 95% (for the CNN and
//! the GRU, on inputs they have not trained on).

use std::path::Path;
use std::process::Command;

/// Builds examples/NAME/NAME.kn, links it with examples/NAME/main.c, runs it with `steps` and
/// returns the final loss, the first loss and the accuracy from its last line, "final loss L
/// (from F), accuracy ... A", with the whole output for messages.
fn train(name: &str, steps: usize) -> (f32, f32, f32, String) {
    let stdout = run_example(name, &[&steps.to_string()]);
    let words: Vec<&str> = stdout.lines().last().unwrap().split_whitespace().collect();
    let loss: f32 = words[2].parse().unwrap();
    let first: f32 = words[4].trim_start_matches('(').trim_end_matches("),").parse().unwrap();
    let accuracy: f32 = words.last().unwrap().parse().unwrap();
    (loss, first, accuracy, stdout)
}

/// Builds examples/NAME/NAME.kn, links it with examples/NAME/main.c, runs it with `args` and
/// returns its output.
fn run_example(name: &str, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let build = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("build")
        .arg(root.join(format!("examples/{name}/{name}.kn")))
        .arg("-o")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let exe = dir.path().join(name);
    let cc = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-O2", "-o"])
        .arg(&exe)
        .arg(root.join(format!("examples/{name}/main.c")))
        .arg(dir.path().join(format!("{name}.o")))
        .arg("-I")
        .arg(dir.path())
        .arg("-lm")
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let run = Command::new(&exe).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    stdout
}

#[test]
fn training_example_learns_the_spirals() {
    // "final loss 0.0026 (from 0.8128), accuracy 1.000"
    let (loss, first, accuracy, stdout) = train("train", 3000);
    assert!(first > 0.5, "{stdout}");
    assert!(loss < 0.05, "loss {loss} after 3000 steps:\n{stdout}");
    assert!(accuracy >= 0.95, "accuracy {accuracy}:\n{stdout}");
}

#[test]
fn cnn_example_learns_bar_orientations() {
    // "final loss 0.0038 (from 0.7014), accuracy on new images 1.000"
    let (loss, first, accuracy, stdout) = train("cnn", 400);
    assert!(first > 0.6, "{stdout}");
    assert!(loss < 0.05, "loss {loss} after 400 steps:\n{stdout}");
    assert!(accuracy >= 0.95, "accuracy {accuracy} on new images:\n{stdout}");
}

#[test]
fn gru_example_learns_the_text() {
    // "final loss 0.0505 (from 3.4424), accuracy on new windows 0.977"
    let (loss, first, accuracy, stdout) = train("gru", 600);
    assert!(first > 3.0, "{stdout}");
    assert!(loss < 0.2, "loss {loss} after 600 steps:\n{stdout}");
    assert!(accuracy >= 0.95, "accuracy {accuracy} on new windows:\n{stdout}");
}

/// examples/gpt, trained from C (the compiled AdamW step of a 4-layer transformer), follows
/// the same model in JAX step for step: from the same initial parameters and batches, 50 steps
/// of loss agree within 1e-3 relative (tests/fixtures/gpt_jax.json, scripts/jax_fixture.py).
#[test]
fn gpt_example_trains_as_jax_does() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sums = root.join("examples/gpt/sums.txt");
    let stdout = run_example("gpt", &[sums.to_str().unwrap(), "50", "--every", "1"]);
    let ours: Vec<f64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("step"))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/gpt_jax.json")).unwrap()).unwrap();
    let jax: Vec<f64> = fixture["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(ours.len(), 50, "{stdout}");
    assert_eq!(jax.len(), 50);
    for (s, (a, e)) in ours.iter().zip(&jax).enumerate() {
        assert!((a - e).abs() <= 1e-3 * e, "step {s}: loss {a} vs JAX {e}\n{stdout}");
    }
    assert!(jax[49] < jax[0] - 0.4, "the loss falls: {} to {}", jax[0], jax[49]);
}
