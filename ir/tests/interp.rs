//! Hand-checked semantics of the reference interpreter: the cases where a careless
//! implementation and jax.numpy would disagree.

use kiln_ir::interp::{eval, run, Data, Tensor};
use kiln_ir::{compose, gen, BinaryOp, ConvWindow, DType, Func, Literal, Op, ReduceKind, Span, TensorType, UnaryOp};

fn t(shape: &[usize], data: Data) -> Tensor {
    Tensor::new(shape.to_vec(), data)
}

fn apply(op: Op, args: &[&Tensor]) -> Tensor {
    let types: Vec<TensorType> = args.iter().map(|a| a.ty()).collect();
    let refs: Vec<&TensorType> = types.iter().collect();
    let ty = op.infer(&refs).expect("well typed");
    eval(&op, args, &ty)
}

#[test]
fn max_and_min_propagate_nan_and_order_zeros() {
    let a = t(&[3], Data::F32(vec![f32::NAN, 0.0, -0.0]));
    let b = t(&[3], Data::F32(vec![1.0, -0.0, 0.0]));
    let Data::F32(m) = apply(Op::Binary(BinaryOp::Max), &[&a, &b]).data else { panic!() };
    assert!(m[0].is_nan());
    assert!(m[1] == 0.0 && m[1].is_sign_positive());
    assert!(m[2] == 0.0 && m[2].is_sign_positive());
    let Data::F32(m) = apply(Op::Binary(BinaryOp::Min), &[&a, &b]).data else { panic!() };
    assert!(m[0].is_nan() && m[1].is_sign_negative() && m[2].is_sign_negative());
}

#[test]
fn float_to_int_saturates_and_nan_is_zero() {
    let x = t(&[5], Data::F32(vec![f32::NAN, 3e9, -3e9, -2.7, 2.7]));
    let r = apply(Op::Convert { to: DType::I32 }, &[&x]);
    assert_eq!(r.data, Data::I32(vec![0, i32::MAX, i32::MIN, -2, 2]));
    let r = apply(Op::Convert { to: DType::Bool }, &[&x]);
    assert_eq!(r.data, Data::Bool(vec![true, true, true, true, true]));
}

#[test]
fn integer_arithmetic_wraps() {
    let a = t(&[2], Data::I32(vec![i32::MAX, i32::MIN]));
    let r = apply(Op::Binary(BinaryOp::Add), &[&a, &a]);
    assert_eq!(r.data, Data::I32(vec![-2, 0]));
    let r = apply(Op::Unary(UnaryOp::Abs), &[&a]);
    assert_eq!(r.data, Data::I32(vec![i32::MAX, i32::MIN]));
}

#[test]
fn slice_with_negative_step() {
    let x = t(&[2, 4], Data::I32((0..8).collect()));
    let r = apply(Op::Slice { start: vec![1, 3], step: vec![1, -2], shape: vec![1, 2] }, &[&x]);
    assert_eq!(r.data, Data::I32(vec![7, 5]));
}

#[test]
fn broadcast_transpose_concat_reduce_dot() {
    let x = t(&[2, 1], Data::F64(vec![1.0, 2.0]));
    let b = apply(Op::Broadcast { shape: vec![3, 2, 2], dims: vec![1, 2] }, &[&x]);
    assert_eq!(b.data, Data::F64(vec![1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]));
    let y = t(&[2, 3], Data::I64((0..6).collect()));
    assert_eq!(apply(Op::Transpose { perm: vec![1, 0] }, &[&y]).data, Data::I64(vec![0, 3, 1, 4, 2, 5]));
    let c = apply(Op::Concat { axis: 1 }, &[&y, &y]);
    assert_eq!(c.shape, vec![2, 6]);
    assert_eq!(c.data, Data::I64(vec![0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]));
    let s = apply(Op::Reduce { kind: ReduceKind::Sum, axes: vec![0] }, &[&y]);
    assert_eq!(s.data, Data::I64(vec![3, 5, 7]));
    let m = apply(Op::Reduce { kind: ReduceKind::Max, axes: vec![0, 1] }, &[&y]);
    assert_eq!(m.data, Data::I64(vec![5]));
    let w = t(&[3, 2], Data::I64(vec![1, 0, 0, 1, 1, 1]));
    assert_eq!(apply(Op::Dot, &[&y, &w]).data, Data::I64(vec![2, 3, 8, 9]));
}

#[test]
fn f32_sums_are_correctly_rounded() {
    // 2^24 + 1 + 1 is not reachable by an f32 accumulator but is by the interpreter's.
    let x = t(&[3], Data::F32(vec![16777216.0, 1.0, 1.0]));
    let r = apply(Op::Reduce { kind: ReduceKind::Sum, axes: vec![0] }, &[&x]);
    assert_eq!(r.data, Data::F32(vec![16777218.0]));
}

#[test]
fn every_op_in_the_catalog_has_a_type_rule_and_a_name() {
    let mut names = std::collections::BTreeSet::new();
    for op in Op::catalog() {
        assert!(names.insert(op.name()), "duplicate op name {}", op.name());
    }
    assert!(Op::Const(Literal::Bool(true)).infer(&[]).is_ok());
}

#[test]
fn conv2d_by_hand() {
    // x = [[1, 2], [3, 4]] (one image, one channel), w = [[1, 10]], padded by one column on
    // the left: y[i, j] = xp[i, j] + 10 xp[i, j + 1] with xp = [[0, 1, 2], [0, 3, 4]].
    let x = t(&[1, 2, 2, 1], Data::F64(vec![1.0, 2.0, 3.0, 4.0]));
    let w = t(&[1, 2, 1, 1], Data::F64(vec![1.0, 10.0]));
    let mut window = ConvWindow::new([1, 1], [0, 0], [1, 1]);
    window.pad_lo = [0, 1];
    let y = apply(Op::Conv(window), &[&x, &w]);
    assert_eq!((y.shape.clone(), y.data), (vec![1, 2, 2, 1], Data::F64(vec![10.0, 21.0, 30.0, 43.0])));
    // Dilating the input by 2 puts a zero between columns: xd = [[1, 0, 2], [3, 0, 4]]; with a
    // stride of 2 the kernel starts at columns 0 and 2 of [xd, 0] (one column of padding on
    // the right): y = [[1 + 0, 2 + 0], [3, 4]].
    let mut window = ConvWindow::new([1, 2], [0, 0], [1, 1]);
    window.lhs_dilation = [1, 2];
    window.pad_hi = [0, 1];
    let y = apply(Op::Conv(window), &[&x, &w]);
    assert_eq!(y.data, Data::F64(vec![1.0, 2.0, 3.0, 4.0]));
    // A negative padding crops: the first column is dropped, y = 2 + 0, 4 + 0 with the right pad.
    let mut window = ConvWindow::new([1, 1], [0, 0], [1, 1]);
    (window.pad_lo, window.pad_hi) = ([0, -1], [0, 1]);
    let y = apply(Op::Conv(window), &[&x, &w]);
    assert_eq!(y.data, Data::F64(vec![2.0, 4.0]));
    // Padding multiplies like any element: an infinite weight over padding gives NaN.
    let inf = t(&[1, 2, 1, 1], Data::F64(vec![f64::INFINITY, 1.0]));
    let mut window = ConvWindow::new([1, 1], [0, 0], [1, 1]);
    window.pad_lo = [0, 1];
    let Data::F64(y) = apply(Op::Conv(window), &[&x, &inf]).data else { panic!() };
    assert!(y[0].is_nan() && y[1] == f64::INFINITY);
}

#[test]
fn padding_a_convolution_is_padding_its_input() {
    // conv(x, w) with any window = conv(pad(x), w) with the same strides and kernel dilation
    // and no padding or input dilation, pad being kiln_ir::compose::pad.
    let mut rng = gen::Rng::new(gen::test_seed());
    for _ in 0..50 {
        let f = gen::single_op_func(&mut rng, &Op::catalog().into_iter().find(|o| o.name() == "conv2d").unwrap(), "f");
        let (Op::Conv(window), [x, w]) = (&f.insts[0].op, [f.params[0].ty.clone(), f.params[1].ty.clone()]) else {
            panic!()
        };
        let mut g = Func::new("g", Span::default());
        let (xv, wv) = (g.add_param("x", x.clone(), Span::default()), g.add_param("w", w.clone(), Span::default()));
        let mut xp = xv;
        for a in 0..2 {
            xp = compose::pad(
                &mut g,
                xp,
                1 + a,
                window.pad_lo[a],
                window.pad_hi[a],
                window.lhs_dilation[a] - 1,
                Span::default(),
            )
            .unwrap();
        }
        let plain = ConvWindow::new(window.stride, [0, 0], window.rhs_dilation);
        let y = g.push(Op::Conv(plain), vec![xp, wv], Span::default()).unwrap();
        g.results.push(y);
        let args = [gen::tensor(&mut rng, &x, false), gen::tensor(&mut rng, &w, false)];
        assert_eq!(run(&f, &args), run(&g, &args), "{window:?}");
    }
}

#[test]
fn pad_places_elements_between_and_around_zeros() {
    let x = Tensor::new(vec![3], Data::I32(vec![1, 2, 3]));
    let padded = |lo: i64, hi: i64, interior: usize| -> Result<Data, String> {
        let mut f = Func::new("f", Span::default());
        let p = f.add_param("x", x.ty(), Span::default());
        let v = compose::pad(&mut f, p, 0, lo, hi, interior, Span::default())?;
        f.results.push(v);
        Ok(run(&f, std::slice::from_ref(&x)).remove(0).data)
    };
    assert_eq!(padded(1, 2, 0), Ok(Data::I32(vec![0, 1, 2, 3, 0, 0])));
    assert_eq!(padded(0, 0, 2), Ok(Data::I32(vec![1, 0, 0, 2, 0, 0, 3])));
    assert_eq!(padded(-1, 1, 1), Ok(Data::I32(vec![0, 2, 0, 3, 0])));
    assert_eq!(padded(2, -3, 0), Ok(Data::I32(vec![0, 0])));
    assert!(padded(-2, -1, 0).is_err());
}
