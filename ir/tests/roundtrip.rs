//! The text form prints and parses back to the same IR, for random programs and for a random
//! instance of every op in the table.

use kiln_ir::gen::{random_func, single_op_func, Rng};
use kiln_ir::text::{parse_module, print_module};
use kiln_ir::verify::verify_module;
use kiln_ir::{Module, Op};
use proptest::prelude::*;

fn round_trip(module: &Module) {
    verify_module(module).expect("generated modules verify");
    let text = print_module(module);
    let parsed = parse_module(&text).unwrap_or_else(|d| panic!("{d:?}\n{text}"));
    assert_eq!(&parsed, module, "round trip changed the module:\n{text}");
    assert_eq!(print_module(&parsed), text);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_programs_round_trip(seed in any::<u64>(), size in 1usize..40) {
        let mut rng = Rng::new(seed);
        let funcs = vec![random_func(&mut rng, size, "f"), random_func(&mut rng, size / 2 + 1, "g")];
        round_trip(&Module { name: "m".into(), funcs });
    }

    #[test]
    fn every_op_round_trips(seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let funcs = Op::catalog().iter().enumerate().map(|(i, op)| single_op_func(&mut rng, op, &format!("f{i}"))).collect();
        round_trip(&Module { name: "ops".into(), funcs });
    }
}

#[test]
fn malformed_text_is_an_error_not_a_panic() {
    let good = print_module(&Module { name: "m".into(), funcs: vec![random_func(&mut Rng::new(7), 20, "f")] });
    for cut in 0..good.len() {
        if good.is_char_boundary(cut) {
            let _ = parse_module(&good[..cut]);
        }
    }
    let err = parse_module(
        "module m\nfunc @f(%x: f32[2]) -> (out0: f32[2]) {\n  %1 = frobnicate %x : f32[2]\n  return %1\n}\n",
    )
    .unwrap_err();
    assert_eq!(err.code, "E0900");
    assert!(err.message.contains("unknown op `frobnicate`"), "{}", err.message);
    let err =
        parse_module("module m\nfunc @f(%x: f32[2]) -> (out0: f32[3]) {\n  %1 = neg %x : f32[3]\n  return %1\n}\n")
            .unwrap_err();
    assert!(err.message.contains("gives f32[2], not f32[3]"), "{}", err.message);
}
