//! Transformations as values: `grad`, `value_and_grad`, `jvp` and `vjp` applied to functions,
//! in exports (`export grad(loss, wrt=[w]) as g;`) and in calls (`grad(f, wrt=x)(x, y)`), and
//! composable (`grad(grad(f))`, `jvp(grad(f))`).
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
}

impl Transform {
    pub const ALL: [(Transform, &'static str); 4] = [
        (Transform::Grad, "grad"),
        (Transform::ValueAndGrad, "value_and_grad"),
        (Transform::Jvp, "jvp"),
        (Transform::Vjp, "vjp"),
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
}

/// Applies transformations to IR functions (implemented by kiln-passes).
pub trait Differentiator {
    /// The function `name` that is `kind` of `f`, differentiating with respect to the
    /// parameters at `wrt` (grad and value_and_grad only). Errors are lowercase reasons.
    fn transform(&self, kind: Transform, f: &Func, wrt: &[usize], name: &str) -> Result<Func, String>;
}
