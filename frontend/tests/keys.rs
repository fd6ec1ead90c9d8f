//! Keys chosen by a conditional are the keys themselves, in the interpreter (tests/run/random.kn
//! compiles the same).

use kiln_ir::interp::{run, Data, Tensor};

#[test]
fn a_conditional_gives_back_the_key_it_picks() {
    let src = "fn chosen(seed: i32, flag: bool) -> f32[3] {
    let (a, b) = split(key(seed));
    let k = if flag { a } else { b };
    uniform(k, [3])
}
fn direct(seed: i32) -> (f32[3], f32[3]) {
    let (a, b) = split(key(seed));
    (uniform(a, [3]), uniform(b, [3]))
}
export chosen;
export direct;
";
    let module = kiln_frontend::compile_source(src, "m").unwrap_or_else(|e| panic!("{e:?}"));
    let seed = Tensor::new(vec![], Data::I32(vec![7]));
    let direct = run(module.func("direct").unwrap(), std::slice::from_ref(&seed));
    for (flag, want) in [(true, &direct[0]), (false, &direct[1])] {
        let got = run(module.func("chosen").unwrap(), &[seed.clone(), Tensor::new(vec![], Data::Bool(vec![flag]))]);
        assert_eq!(&got[0], want, "flag {flag}");
    }
    assert_ne!(direct[0], direct[1], "the two keys draw differently");
}
