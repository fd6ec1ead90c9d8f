//! Every op, generated from the op table (loops, scans and conditionals included): vmap over a
//! random choice of parameters and axes gives, in the interpreter, exactly the results of
//! running the op on each batch element and stacking them (jax.vmap's definition).

use kiln_ir::gen::{self, Rng};
use kiln_ir::interp::{self, for_each_index, strides, Tensor};
use kiln_ir::{Op, TensorType};
use kiln_passes::vmap::vmap;

/// Element `b` of `t` along `axis`: that axis removed.
fn take(t: &Tensor, axis: usize, b: usize) -> Tensor {
    let mut shape = t.shape.clone();
    shape.remove(axis);
    let s = strides(&t.shape);
    let mut indices = vec![];
    for_each_index(&shape, |idx| {
        let mut full = idx.to_vec();
        full.insert(axis, b);
        indices.push(full.iter().zip(&s).map(|(i, s)| i * s).sum());
    });
    Tensor::new(shape, t.data.gather(&indices))
}

/// `parts` (of one type) stacked along a new axis `axis`.
fn stack(parts: &[Tensor], axis: usize) -> Tensor {
    let mut shape = parts[0].shape.clone();
    shape.insert(axis, parts.len());
    let joined: Vec<&interp::Data> = parts.iter().map(|p| &p.data).collect();
    let all = interp::concat_data(&joined);
    let per = parts[0].data.len();
    let inner = strides(&parts[0].shape);
    let mut indices = vec![];
    for_each_index(&shape, |idx| {
        let mut rest = idx.to_vec();
        let b = rest.remove(axis);
        indices.push(b * per + rest.iter().zip(&inner).map(|(i, s)| i * s).sum::<usize>());
    });
    Tensor::new(shape, all.gather(&indices))
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.shape == b.shape
        && (0..a.data.len()).all(|i| {
            let (x, y) = (a.data.get_f64(i), b.data.get_f64(i));
            x == y || (x.is_nan() && y.is_nan())
        })
}

#[test]
fn vmap_of_every_op_is_the_op_on_each_element_stacked() {
    let mut rng = Rng::new(gen::test_seed());
    let mut checked = 0;
    for template in Op::catalog() {
        for _ in 0..12 {
            let f = gen::single_op_func(&mut rng, &template, "f");
            if f.params.is_empty() {
                continue;
            }
            let size = 1 + rng.below(3);
            let mut in_axes: Vec<Option<usize>> =
                f.params.iter().map(|p| rng.chance(0.6).then(|| rng.below(p.ty.rank() + 1))).collect();
            if in_axes.iter().all(Option::is_none) {
                in_axes[rng.below(f.params.len())] = Some(0);
            }
            let out_axes: Vec<usize> = f.result_types().iter().map(|t| rng.below(t.rank() + 2)).collect();
            let out_axes: Vec<usize> = out_axes.iter().zip(f.result_types()).map(|(&a, t)| a.min(t.rank())).collect();
            let what = format!("vmap of {} over {in_axes:?} -> {out_axes:?}, {size} elements", template.name());
            let g = vmap(&f, "g", &in_axes, &out_axes, size).unwrap_or_else(|e| panic!("{what}: {e}")).func;
            kiln_ir::verify::verify_func(&g).unwrap_or_else(|e| panic!("{what}: {e}"));
            let args: Vec<Tensor> = f
                .params
                .iter()
                .zip(&in_axes)
                .map(|(p, axis)| {
                    let mut shape = p.ty.shape.clone();
                    if let Some(a) = axis {
                        shape.insert(*a, size);
                    }
                    gen::tensor(&mut rng, &TensorType::new(p.ty.dtype, shape), true)
                })
                .collect();
            let batched = interp::run(&g, &args);
            let per_element: Vec<Vec<Tensor>> = (0..size)
                .map(|b| {
                    let element: Vec<Tensor> = args
                        .iter()
                        .zip(&in_axes)
                        .map(|(a, axis)| axis.map_or_else(|| a.clone(), |axis| take(a, axis, b)))
                        .collect();
                    interp::run(&f, &element)
                })
                .collect();
            for (r, &axis) in out_axes.iter().enumerate() {
                let parts: Vec<Tensor> = per_element.iter().map(|out| out[r].clone()).collect();
                let expected = stack(&parts, axis);
                assert!(same(&batched[r], &expected), "{what}: result {r}\n{}", kiln_ir::text::print_func(&g));
                checked += 1;
            }
        }
    }
    assert!(checked > 12 * 40, "only {checked} results checked");
}
