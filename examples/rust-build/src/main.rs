//! Calls two kiln models, compiled by build.rs, through their generated safe bindings.

include!(concat!(env!("OUT_DIR"), "/mlp.rs"));
include!(concat!(env!("OUT_DIR"), "/affine.rs"));

/// Deterministic inputs: a smooth pattern in [-scale, scale].
fn pattern(n: usize, seed: f32, scale: f32) -> Vec<f32> {
    (0..n).map(|i| scale * (0.37 * i as f32 + 1.7 * seed).sin()).collect()
}

/// The inputs of `mlp::loss`, and those of `affine::loss`.
fn inputs() -> (Vec<Vec<f32>>, Vec<i32>, Vec<Vec<f32>>) {
    let size = |shape: &[usize]| shape.iter().product::<usize>();
    let mlp = vec![
        pattern(size(&mlp::LOSS_X_SHAPE), 1.0, 1.0),
        pattern(size(&mlp::LOSS_W1_SHAPE), 2.0, 0.3),
        pattern(size(&mlp::LOSS_B1_SHAPE), 3.0, 0.1),
        pattern(size(&mlp::LOSS_W2_SHAPE), 4.0, 0.3),
        pattern(size(&mlp::LOSS_B2_SHAPE), 5.0, 0.1),
    ];
    let labels = (0..mlp::LOSS_LABELS_SHAPE[0] as i32).map(|i| (i * 7) % 10).collect();
    let affine = vec![pattern(24, 6.0, 1.0), pattern(8, 7.0, 1.0), vec![0.5, -0.25, 1.0], vec![0.1]];
    (mlp, labels, affine)
}

/// Both losses, computed by the compiled models.
fn losses() -> Result<(f32, f32), Box<dyn std::error::Error>> {
    let (m, labels, a) = inputs();
    let mut l1 = [0.0f32];
    mlp::loss(&m[0], &labels, &m[1], &m[2], &m[3], &m[4], &mut l1)?;
    let mut l2 = [0.0f32];
    affine::loss(&a[0], &a[1], &a[2], &a[3], &mut l2)?;
    Ok((l1[0], l2[0]))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (l1, l2) = losses()?;
    println!("mlp loss = {l1:.6}");
    println!("affine loss = {l2:.6}");
    // The bindings refuse a slice of the wrong length before any call.
    let mut out = [0.0f32];
    let err = affine::loss(&[0.0; 5], &[0.0; 8], &[0.0; 3], &[0.0], &mut out).unwrap_err();
    println!("a short slice is refused: {err}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use kiln::kiln_ir::interp::{self, Data, Tensor};

    /// Runs `func` of the model at `path` in kiln's reference interpreter.
    fn interpret(path: &str, func: &str, args: Vec<Tensor>) -> f32 {
        let source = kiln::Source::read(std::path::Path::new(path)).unwrap();
        let module = kiln::check(&source, &source.default_module_name()).unwrap();
        interp::run(module.func(func).unwrap(), &args)[0].data.get_f64(0) as f32
    }

    fn tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::new(shape.to_vec(), Data::F32(v))
    }

    #[test]
    fn compiled_models_agree_with_the_interpreter() {
        let (l1, l2) = super::losses().unwrap();
        let (m, labels, a) = super::inputs();
        let shapes: [&[usize]; 5] = [&[16, 32], &[32, 64], &[64], &[64, 10], &[10]];
        let mut args: Vec<Tensor> = m.into_iter().zip(shapes).map(|(v, s)| tensor(s, v)).collect();
        args.insert(1, Tensor::new(vec![16], Data::I32(labels)));
        let e1 = interpret("../mlp.kn", "loss", args);
        let shapes: [&[usize]; 4] = [&[8, 3], &[8], &[3], &[]];
        let e2 = interpret("models/affine.kn", "loss", a.into_iter().zip(shapes).map(|(v, s)| tensor(s, v)).collect());
        assert!((l1 - e1).abs() <= 1e-5 * e1.abs(), "mlp: {l1} vs {e1}");
        assert!((l2 - e2).abs() <= 1e-5 * e2.abs(), "affine: {l2} vs {e2}");
    }
}
