//! Without a differentiator, the frontend refuses transformations with E0305.

#[test]
fn transformations_need_a_differentiator() {
    let errors =
        kiln_frontend::compile_source("fn f(x: f32) -> f32 { x * x }\nexport grad(f) as g;\n", "m").unwrap_err();
    let [err] = &errors[..] else { panic!("one error: {errors:?}") };
    assert_eq!(err.code, "E0305");
    assert!(err.message.contains("`grad` needs the autodiff pass"), "{}", err.message);
    // Programs without transformations need none.
    assert!(kiln_frontend::compile_source("fn f(x: f32) -> f32 { x * x }\nexport f;\n", "m").is_ok());
}
