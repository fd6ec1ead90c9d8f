//! Reductions are accurate at any size: the compiled sum of 2^26 f32 ones is exactly 2^26
//! (an f32 accumulator stops at 2^24), and sums of random data stay within 1e-6 relative of an
//! f64 reference.

mod common;

use kiln_ir::gen::Rng;
use kiln_ir::interp::{Data, Tensor};

fn load(src: &str) -> common::Loaded {
    let module = kiln_frontend::compile_source(src, "acc").unwrap_or_else(|d| panic!("{d:?}"));
    common::compile_and_load(&module, 2)
}

fn scalar(t: &Tensor) -> f64 {
    t.data.get_f64(0)
}

#[test]
fn sum_of_two_to_the_26_ones_is_exact() {
    let loaded = load(
        "fn flat(x: f32[67108864]) -> f32 { sum(x) }\n\
         fn square(x: f32[8192, 8192]) -> (f32, f32[8192]) { (sum(x), sum(x, axis=0)) }\n\
         export flat;\nexport square;\n",
    );
    let ones = Tensor::new(vec![1 << 26], Data::F32(vec![1.0; 1 << 26]));
    assert_eq!(scalar(&loaded.call("flat", std::slice::from_ref(&ones))[0]), 67108864.0);
    let square = Tensor::new(vec![8192, 8192], ones.data);
    let r = loaded.call("square", &[square]);
    assert_eq!(scalar(&r[0]), 67108864.0);
    assert!(matches!(&r[1].data, Data::F32(v) if v.iter().all(|&x| x == 8192.0)));
}

#[test]
fn random_sums_are_within_1e6_of_f64() {
    let loaded = load(
        "fn total(x: f32[16777216]) -> (f32, f32) { (sum(x), mean(x)) }\n\
         fn rows(x: f32[512, 32768]) -> f32[512] { sum(x, axis=1) }\n\
         export total;\nexport rows;\n",
    );
    let mut rng = Rng::new(common::seed());
    let v: Vec<f32> = (0..1 << 24).map(|_| rng.unit() as f32).collect();
    let exact: f64 = v.iter().map(|&x| x as f64).sum();
    let r = loaded.call("total", &[Tensor::new(vec![1 << 24], Data::F32(v.clone()))]);
    let rel = |a: f64, e: f64| ((a - e) / e).abs();
    assert!(rel(scalar(&r[0]), exact) < 1e-6, "sum {} vs {exact}", scalar(&r[0]));
    assert!(rel(scalar(&r[1]), exact / (1 << 24) as f64) < 1e-6, "mean");
    let r = loaded.call("rows", &[Tensor::new(vec![512, 32768], Data::F32(v.clone()))]);
    let Data::F32(sums) = &r[0].data else { panic!() };
    for (i, &s) in sums.iter().enumerate() {
        let e: f64 = v[i * 32768..(i + 1) * 32768].iter().map(|&x| x as f64).sum();
        assert!(rel(s as f64, e) < 1e-6, "row {i}: {s} vs {e}");
    }
}
