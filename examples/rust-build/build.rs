// Compiles two models into one static library: examples/mlp.kn (module `mlp`) and
// models/affine.kn (module `affine`). Both export a function named `loss`; their C symbols are
// `mlp_loss` and `affine_loss`, so they link side by side.
fn main() {
    kiln::Build::new().file("../mlp.kn").file("models/affine.kn").compile("models");
}
