//! conv2d: the interpreter agrees with a direct convolution written here, compiled code (the
//! direct kernel at stride 1, the im2col expansion otherwise, in chunks of images when its
//! matrix is large) agrees with the interpreter, and first and second derivatives agree with
//! finite differences.

mod common;

use kiln_ir::gen::Rng;
use kiln_ir::interp::{run, Data, Tensor};

struct Config {
    x: [usize; 4],
    w: [usize; 4],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Config {
    fn out(&self, a: usize) -> usize {
        (self.x[1 + a] + 2 * self.padding[a] - self.dilation[a] * (self.w[a] - 1) - 1) / self.stride[a] + 1
    }

    fn source(&self, dtype: &str) -> String {
        let [n, h, w, c] = self.x;
        let [kh, kw, _, co] = self.w;
        format!(
            "fn f(x: {dtype}[{n}, {h}, {w}, {c}], k: {dtype}[{kh}, {kw}, {c}, {co}]) -> {dtype}[{n}, {}, {}, {co}] {{\n    conv2d(x, k, stride=[{}, {}], padding=[{}, {}], dilation=[{}, {}])\n}}\n\
             fn loss(x: {dtype}[{n}, {h}, {w}, {c}], k: {dtype}[{kh}, {kw}, {c}, {co}]) -> {dtype} {{ sum(tanh(f(x, k))) }}\n\
             export f;\nexport value_and_grad(loss, wrt=[x, k]) as g;\n",
            self.out(0),
            self.out(1),
            self.stride[0],
            self.stride[1],
            self.padding[0],
            self.padding[1],
            self.dilation[0],
            self.dilation[1]
        )
    }

    /// The convolution by its definition, in f64.
    fn direct(&self, x: &[f64], k: &[f64]) -> Vec<f64> {
        let [n, h, w, c] = self.x;
        let [kh, kw, _, co] = self.w;
        let (oh, ow) = (self.out(0), self.out(1));
        let mut y = vec![0.0; n * oh * ow * co];
        for b in 0..n {
            for i in 0..oh {
                for j in 0..ow {
                    for o in 0..co {
                        let mut acc = 0.0;
                        for p in 0..kh {
                            for q in 0..kw {
                                let r = (i * self.stride[0] + p * self.dilation[0]) as i64 - self.padding[0] as i64;
                                let s = (j * self.stride[1] + q * self.dilation[1]) as i64 - self.padding[1] as i64;
                                if r < 0 || s < 0 || r >= h as i64 || s >= w as i64 {
                                    continue;
                                }
                                for ci in 0..c {
                                    acc += x[((b * h + r as usize) * w + s as usize) * c + ci]
                                        * k[((p * kw + q) * c + ci) * co + o];
                                }
                            }
                        }
                        y[((b * oh + i) * ow + j) * co + o] = acc;
                    }
                }
            }
        }
        y
    }
}

fn configs() -> Vec<Config> {
    vec![
        Config { x: [2, 7, 6, 3], w: [3, 2, 3, 4], stride: [2, 2], padding: [1, 1], dilation: [1, 2] },
        Config { x: [1, 5, 5, 2], w: [3, 3, 2, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1] },
        Config { x: [2, 8, 9, 1], w: [2, 3, 1, 2], stride: [3, 2], padding: [0, 2], dilation: [2, 1] },
        Config { x: [1, 4, 4, 3], w: [1, 1, 3, 5], stride: [1, 1], padding: [0, 0], dilation: [1, 1] },
        // Strided, so im2col: a matrix of 37 MB in f64, built in chunks of four images and one
        // (its stride-1 gradients run on the direct kernel).
        Config { x: [5, 80, 80, 64], w: [3, 3, 64, 2], stride: [2, 2], padding: [1, 1], dilation: [1, 1] },
        // Stride 1: the direct kernel, over rows its register tiles do not divide.
        Config { x: [3, 20, 19, 16], w: [3, 3, 16, 5], stride: [1, 1], padding: [1, 1], dilation: [1, 1] },
    ]
}

fn random(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape.to_vec(), Data::F64((0..n).map(|_| 2.0 * rng.unit() - 1.0).collect()))
}

fn values(t: &Tensor) -> Vec<f64> {
    (0..t.data.len()).map(|i| t.data.get_f64(i)).collect()
}

#[test]
fn conv2d_matches_a_direct_convolution_and_compiles() {
    let mut rng = Rng::new(common::seed());
    for cfg in configs() {
        let source = kiln::Source { name: "conv.kn".into(), text: cfg.source("f64") };
        let module = kiln::check(&source, "conv").unwrap_or_else(|e| panic!("{}", e.render(false)));
        let (x, k) = (random(&mut rng, &cfg.x), random(&mut rng, &cfg.w));
        let y = run(module.func("f").unwrap(), &[x.clone(), k.clone()]);
        let expected = cfg.direct(&values(&x), &values(&k));
        for (a, e) in values(&y[0]).iter().zip(&expected) {
            assert!((a - e).abs() <= 1e-12 * (1.0 + e.abs()), "{a} vs {e} for {:?} {:?}", cfg.x, cfg.w);
        }
        let loaded = common::compile_and_load(&module, 2);
        for f in &module.funcs {
            let args = vec![random(&mut rng, &cfg.x), random(&mut rng, &cfg.w)];
            common::check_against(&loaded, f, &args, common::Check::Program).unwrap();
        }
    }
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let mut rng = Rng::new(common::seed());
    // The chunked configuration's gradient is checked against the interpreter above; finite
    // differences on it would take most of a minute.
    for cfg in configs().into_iter().filter(|c| c.x.iter().product::<usize>() < 100_000) {
        let source = kiln::Source { name: "conv.kn".into(), text: cfg.source("f64") };
        let module = kiln::check(&source, "conv").unwrap();
        let (x, k) = (random(&mut rng, &cfg.x), random(&mut rng, &cfg.w));
        let out = run(module.func("g").unwrap(), &[x.clone(), k.clone()]);
        let loss = |x: &Tensor, k: &Tensor| values(&run(module.func("g").unwrap(), &[x.clone(), k.clone()])[0])[0];
        let h = 1e-6;
        for (which, t) in [(0usize, &x), (1, &k)] {
            for _ in 0..6 {
                let i = rng.below(t.data.len());
                let shifted = |d: f64| {
                    let mut v = values(t);
                    v[i] += d;
                    Tensor::new(t.shape.clone(), Data::F64(v))
                };
                let (p, m) = if which == 0 {
                    (loss(&shifted(h), &k), loss(&shifted(-h), &k))
                } else {
                    (loss(&x, &shifted(h)), loss(&x, &shifted(-h)))
                };
                let fd = (p - m) / (2.0 * h);
                let g = values(&out[1 + which])[i];
                assert!((g - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "d/d{}[{i}]: {g} vs {fd}", ["x", "k"][which]);
            }
        }
    }
}

#[test]
fn conv2d_second_derivatives_match_finite_differences() {
    // Hessian-vector products jvp(grad(loss, wrt=k)) against central differences of the
    // gradient, interpreted and compiled: the transposed convolutions (input dilation, cropping
    // padding) differentiated once more.
    let mut rng = Rng::new(common::seed());
    for cfg in configs().into_iter().filter(|c| c.stride != [1, 1] && c.x.iter().product::<usize>() < 100_000) {
        let [n, h, w, c] = cfg.x;
        let [kh, kw, _, co] = cfg.w;
        let (x_ty, k_ty) = (format!("f64[{n}, {h}, {w}, {c}]"), format!("f64[{kh}, {kw}, {c}, {co}]"));
        let text = format!(
            "{}fn hvp(x: {x_ty}, k: {k_ty}, tx: {x_ty}, tk: {k_ty}) -> {k_ty} {{\n    let (_, hv) = jvp(grad(loss, wrt=k))(x, k, tx, tk);\n    hv\n}}\nexport hvp;\n",
            cfg.source("f64")
        );
        let module = kiln::check(&kiln::Source { name: "conv.kn".into(), text }, "conv2")
            .unwrap_or_else(|e| panic!("{}", e.render(false)));
        let args: Vec<Tensor> = [&cfg.x, &cfg.w, &cfg.x, &cfg.w].iter().map(|s| random(&mut rng, &s[..])).collect();
        let hv = values(&run(module.func("hvp").unwrap(), &args)[0]);
        let grad_k = |s: f64| {
            let shifted: Vec<Tensor> = (0..2)
                .map(|i| {
                    let v = values(&args[i]).iter().zip(values(&args[i + 2])).map(|(a, t)| a + s * t).collect();
                    Tensor::new(args[i].shape.clone(), Data::F64(v))
                })
                .collect();
            values(&run(module.func("g").unwrap(), &shifted)[2])
        };
        let step = 1e-5;
        let (plus, minus) = (grad_k(step), grad_k(-step));
        for (i, (a, (p, m))) in hv.iter().zip(plus.iter().zip(&minus)).enumerate() {
            let fd = (p - m) / (2.0 * step);
            assert!((a - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "hvp[{i}]: {a} vs {fd} for {:?} {:?}", cfg.x, cfg.w);
        }
        let loaded = common::compile_and_load(&module, 2);
        common::check_against(&loaded, module.func("hvp").unwrap(), &args, common::Check::Program).unwrap();
    }
}
