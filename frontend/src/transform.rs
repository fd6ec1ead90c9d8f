//! Transformations as values: `grad`, `value_and_grad`, `jvp`, `vjp` and `vmap` applied to
//! functions, in exports (`export grad(loss, wrt=[w]) as g;`) and in calls (`grad(f, wrt=x)(x,
//! y)`, `vmap(f, in_axes=[0, None])(xs, w)`), and composable (`grad(grad(f))`, `jvp(grad(f))`,
//! `vmap(grad(f))`).
//!
//! The frontend resolves what is transformed and instantiates it at the right types; the
//! transformation itself belongs to kiln-passes, which the driver hands in as a
//! [`Differentiator`] (the frontend may depend on kiln-ir only).

use kiln_ir::Func;

/// A transformation of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// `grad(f, wrt)`: the gradients of f's scalar result with respect to `wrt`.
    Grad,
    /// `value_and_grad(f, wrt)`: f's value, then the gradients.
    ValueAndGrad,
    /// `jvp(f)`: (primals..., tangents of float primals...) -> (results..., tangents of float results...).
    Jvp,
    /// `vjp(f)`: (primals..., cotangents of float results...) -> (results..., cotangents of float primals...).
    Vjp,
    /// `vmap(f, in_axes=, out_axes=, axis_size=)`: f mapped over an axis of some parameters.
    Vmap,
}

impl Transform {
    pub const ALL: [(Transform, &'static str); 5] = [
        (Transform::Grad, "grad"),
        (Transform::ValueAndGrad, "value_and_grad"),
        (Transform::Jvp, "jvp"),
        (Transform::Vjp, "vjp"),
        (Transform::Vmap, "vmap"),
    ];

    pub fn parse(name: &str) -> Option<Transform> {
        Self::ALL.iter().find(|t| t.1 == name).map(|t| t.0)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|t| t.0 == self).map(|t| t.1).expect("every transform is listed")
    }

    /// Whether the transformation takes `wrt`.
    pub fn takes_wrt(self) -> bool {
        matches!(self, Transform::Grad | Transform::ValueAndGrad)
    }

    /// The keyword arguments the transformation takes (read as written, not evaluated).
    pub fn keywords(self) -> &'static [&'static str] {
        match self {
            Transform::Grad | Transform::ValueAndGrad => &["wrt"],
            Transform::Jvp | Transform::Vjp => &[],
            Transform::Vmap => &["in_axes", "out_axes", "axis_size"],
        }
    }
}

/// Applies transformations to IR functions (implemented by kiln-passes).
pub trait Differentiator {
    /// The function `name` that is `kind` of `f` (a derivative), differentiating with respect
    /// to the parameters at `wrt` (grad and value_and_grad only). Errors are lowercase reasons.
    fn transform(&self, kind: Transform, f: &Func, wrt: &[usize], name: &str) -> Result<Func, String>;

    /// The function `name` that is `f` mapped over axis `in_axes[p]` of each parameter p that
    /// has one, `size` elements, its results stacked along `out_axes`; and notes on the parts
    /// that run other than as one batched op. Errors are lowercase reasons.
    fn vmap(
        &self,
        f: &Func,
        in_axes: &[Option<usize>],
        out_axes: &[usize],
        size: usize,
        name: &str,
    ) -> Result<(Func, Vec<String>), String>;
}
