//! Scheduled code (codegen/src/schedule/) agrees with the interpreter, tiled for each register
//! file this machine can run. Contractions: shapes the cache and register tiles divide, shapes
//! they do not (every loop peeled), tiny and batched shapes, in every dtype a product accepts.
//! Products whose left operand is a transpose read it through their indexing map. Vectorized generics: elementwise chains, broadcasts, transposes, row and column reductions,
//! over extents the vector tile does not divide (peeled) and extents shorter than it; gathers and
//! bool operands (tiled for threads only); direct convolutions. Parallel
//! loops give bit-identical results on 1 and 3 threads.

mod common;

use kiln_ir::gen::{self, Rng};
use kiln_ir::DType;

/// (batch, m, k, n): divisible by every tile; partial cache and register tiles in m, k and n;
/// degenerate; batched with odd extents; a matrix-vector product; B with rows of a multiple of
/// 256 bytes read through a padded copy (from 512 rows), batched too.
const SHAPES: &[(&[usize], usize, usize, usize)] = &[
    (&[], 128, 512, 1024),
    (&[], 520, 70, 256),
    (&[2], 512, 9, 128),
    (&[], 70, 300, 530),
    (&[], 1, 1, 1),
    (&[], 7, 5, 3),
    (&[3, 2], 13, 17, 33),
    (&[], 97, 261, 1),
    (&[], 300, 64, 200),
];

/// CPUs whose register files select different tiles: SSE (16 x 128 bits), AVX2 (16 x 256),
/// AVX-512 (32 x 512), as far as this machine can run them.
fn cpus() -> Vec<&'static str> {
    let mut cpus = vec!["x86-64"];
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        cpus.push("x86-64-v3");
    }
    if std::arch::is_x86_feature_detected!("avx512f") {
        cpus.push("x86-64-v4");
    } else {
        eprintln!("skipping x86-64-v4 schedules: this CPU has no AVX-512");
    }
    cpus
}

/// Programs whose generics are vectorized: odd extents, every kind of loop nest.
const GENERICS: &[&str] = &[
    "fn chain(x: f32[7, 333], y: f32[333]) -> f32[7, 333] { tanh(x * y + 1.5) * sigmoid(x) - exp(x) / (abs(y) + 1.0) }",
    "fn logs(x: f32[4, 77]) -> f32[4, 77] { log(abs(x) + 0.5) }",
    "fn soft(x: f32[5, 1000]) -> f32[5, 1000] { softmax(x) }",
    "fn norm(x: f32[9, 37]) -> f32[9, 37] { let m = mean(x, axis=1, keepdims=true); let d = x - m; d * rsqrt(mean(d * d, axis=1, keepdims=true) + 1e-5) }",
    "fn total(x: f32[1001]) -> f32 { sum(x) }",
    "fn columns(x: f32[33, 70]) -> f32[70] { sum(x, axis=0) }",
    "fn rows(x: f32[6, 250]) -> f32[6] { max(x, axis=1) }",
    // A reduction over several axes: two reductions, the second the root of a row group whose
    // own initial value stays outside its loop.
    "fn maxall(x: f32[3, 2, 4, 4]) -> f32[3] { max(x, axis=[1, 2, 3]) }",
    "fn turn(x: f32[33, 70]) -> f32[70, 33] { transpose(x) * 2.0 }",
    "fn ints(a: i32[5, 99], b: i32[99]) -> i32[5, 99] { abs(a - b) * 3 }",
    "fn doubles(x: f64[3, 101]) -> f64[3, 101] { exp(x) + log(abs(x) + 1.0) + tanh(x) }",
    "fn short(x: f32[2, 3]) -> f32[2, 3] { exp(x) * x }",
    "fn rowwise(x: f32[300, 1000]) -> f32[300, 1000] { softmax(x) * 2.0 }",
    "fn long(x: f32[100003], a: f32) -> f32[100003] { exp(x) * a }",
    // Direct convolutions: register tiles that divide neither the row nor the channels, one
    // image (threads over rows), kernel dilation, f64, and the cotangents of a strided
    // convolution (of the input: a convolution of the dilated cotangent; of the kernel: rows
    // of 3 pixels, shorter than a register tile); strided convolutions themselves (3x3 and a
    // 7x7 stem on three channels) are im2col.
    "fn conv(x: f32[4, 40, 40, 16], w: f32[3, 3, 16, 8]) -> f32[4, 40, 40, 8] { conv2d(x, w, padding=1) }",
    "fn conv1(x: f32[1, 17, 13, 5], w: f32[2, 3, 5, 70]) -> f32[1, 16, 9, 70] { conv2d(x, w, dilation=[1, 2]) }",
    "fn dconv(x: f64[2, 9, 11, 3], w: f64[3, 3, 3, 4]) -> f64[2, 9, 11, 4] { conv2d(x, w, padding=1) }",
    "fn closs(x: f32[2, 12, 12, 8], w: f32[3, 3, 8, 16]) -> f32 { sum(tanh(conv2d(x, w, stride=2, padding=1))) }",
    "fn stem(x: f32[2, 23, 23, 3], w: f32[7, 7, 3, 16]) -> f32[2, 12, 12, 16] { conv2d(x, w, stride=2, padding=3) }",
    "fn cgrad(x: f32[2, 12, 12, 8], w: f32[3, 3, 8, 16]) -> f32[2, 12, 12, 8] { grad(closs)(x, w) }",
    "fn wgrad(x: f32[2, 12, 12, 8], w: f32[3, 3, 8, 16]) -> f32[3, 3, 8, 16] { grad(closs, wrt=w)(x, w) }",
    "fn pick(x: f32[300, 400], y: f32[400]) -> f32[300, 400] { where(x > y, x, y) }",
    "fn xty(x: f32[300, 70], y: f32[300, 90]) -> f32[70, 90] { transpose(x) @ y }",
    "fn both(x: f32[30, 70], y: f32[50, 30]) -> (f32[70, 50], f32[70, 30]) { let t = transpose(x); (t @ transpose(y), t) }",
    // Transposes, tiled in squares of lanes: odd extents (both loops peeled), a batch, f64, i32.
    "fn swap(x: f64[3, 20, 45]) -> f64[3, 45, 20] { transpose(x, axes=[0, 2, 1]) * 2.0 }",
    "fn iflip(x: i32[17, 40]) -> i32[40, 17] { transpose(x) + 1 }",
    "fn square(x: f32[64, 64], y: f32[64, 64]) -> f32[64, 64] { transpose(x) - y }",
    // Row groups: two row loops, a producer also returned (not fused), rows too long for the
    // stack (not grouped), row-broadcast operands, a product feeding a group, integer lanes.
    "fn heads(x: f32[3, 5, 96]) -> f32[3, 5, 96] { softmax(x) }",
    "fn shared(x: f32[40, 64]) -> (f32[40, 64], f32[40, 64]) { let e = exp(x - max(x, axis=1, keepdims=true)); (e / sum(e, axis=1, keepdims=true), e) }",
    "fn wide(x: f32[6, 20000]) -> f32[6, 20000] { softmax(x) }",
    "fn layer(x: f32[64, 512], g: f32[512], b: f32[512]) -> f32[64, 512] { let m = mean(x, axis=1, keepdims=true); let d = x - m; d * rsqrt(mean(d * d, axis=1, keepdims=true) + 1e-5) * g + b }",
    "fn attend(q: f32[40, 16], k: f32[48, 16], v: f32[48, 24]) -> f32[40, 24] { softmax(q @ transpose(k) * 0.25) @ v }",
    "fn imax(x: i32[30, 64]) -> i32[30, 64] { x - max(x, axis=1, keepdims=true) + sum(x, axis=1, keepdims=true) }",
    "fn dsoft(x: f64[40, 96]) -> f64[40, 96] { softmax(x) }",
    "fn oddrows(x: f32[64, 1000]) -> f32[64, 1000] { softmax(x) * 3.0 }",
];

fn source() -> String {
    let mut text: String = GENERICS.iter().map(|f| format!("{f}\nexport {};\n", &f[3..f.find('(').unwrap()])).collect();
    for (i, (batch, m, k, n)) in SHAPES.iter().enumerate() {
        for dtype in ["f32", "f64", "i32"] {
            let dims = |last: &[usize]| batch.iter().chain(last).map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
            text += &format!(
                "fn mm{i}_{dtype}(a: {dtype}[{}], b: {dtype}[{}]) -> {dtype}[{}] {{ a @ b }}\nexport mm{i}_{dtype};\n",
                dims(&[*m, *k]),
                dims(&[*k, *n]),
                dims(&[*m, *n])
            );
        }
    }
    text
}

#[test]
fn scheduled_code_agrees_with_the_interpreter() {
    let source = kiln::Source { name: "mm.kn".into(), text: source() };
    let module = kiln::check(&source, "mm").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let mut rng = Rng::new(common::seed());
    for cpu in cpus() {
        let target = kiln_codegen::Target::new(None, Some(cpu)).unwrap();
        let loaded = common::compile_and_load_for(&module, 2, &target);
        loaded.use_pool();
        let mut failures = vec![];
        for f in &module.funcs {
            let args: Vec<_> = gen::arguments(&mut rng, f, false);
            assert!(f.params.iter().all(|p| [DType::F32, DType::F64, DType::I32].contains(&p.ty.dtype)));
            kiln_runtime::pool::set_threads(3);
            let threaded = loaded.call(&f.name, &args);
            kiln_runtime::pool::set_threads(1);
            if let Err(e) = common::check_against_interpreter(&loaded, &f.name, &args, common::Check::Program) {
                failures.push(format!("{cpu}: {e}"));
            }
            if threaded != loaded.call(&f.name, &args) {
                failures.push(format!("{cpu}: `{}` differs between 1 and 3 threads", f.name));
            }
        }
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    }
}

/// Row-wise programs run as row groups (codegen/src/schedule/rows.rs): the schedule fuses them
/// into one loop over rows, which prefetches the next row, and no intermediate tensor is left
/// in the workspace (the rows live on the stack). Rows too long for the stack are not grouped and use the workspace.
#[test]
fn row_groups_keep_intermediate_rows_off_the_workspace() {
    let compile = |text: &str| {
        let source = kiln::Source { name: "rows.kn".into(), text: format!("{text}\nexport f;\n") };
        let module = kiln::check(&source, "rows").unwrap_or_else(|e| panic!("{}", e.render(false)));
        let emit = kiln_codegen::Emit { mlir: true, asm: true, ..Default::default() };
        kiln_codegen::compile(&module, &kiln_codegen::Target::default(), 2, emit).unwrap()
    };
    for program in [
        "fn f(x: f32[256, 1024]) -> f32[256, 1024] { softmax(x) }",
        "fn f(x: f32[256, 512], g: f32[512]) -> f32[256, 512] { let d = x - mean(x, axis=1, keepdims=true); d * rsqrt(mean(d * d, axis=1, keepdims=true) + 1e-5) * g }",
    ] {
        let artifacts = compile(program);
        assert!(artifacts.mlir.unwrap().contains("fuse_into_containing_op"), "not fused: {program}");
        // The loop over a row prefetches the next one (codegen/src/prefetch.rs).
        assert!(artifacts.asm.unwrap().contains("prefetcht0"), "no prefetch: {program}");
        assert_eq!(artifacts.workspace, vec![0], "intermediates in the workspace: {program}");
        // The rows on the stack: one or two rows of f32, reported for the manifest.
        assert!((1024..=32 << 10).contains(&artifacts.stack[0]), "stack bytes {:?}: {program}", artifacts.stack);
    }
    let wide = compile("fn f(x: f32[8, 20000]) -> f32[8, 20000] { softmax(x) }");
    assert!(wide.workspace[0] >= 8 * 20000 * 4, "rows of 80 KB on the stack");
}

/// Compiles `f` of `text` for the host's default target at -O2, with its assembly.
fn compile_f(text: &str) -> kiln_codegen::Artifacts {
    let source = kiln::Source { name: "f.kn".into(), text: format!("{text}\nexport f;\n") };
    let module = kiln::check(&source, "f").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let emit = kiln_codegen::Emit { asm: true, ..Default::default() };
    kiln_codegen::compile(&module, &kiln_codegen::Target::default(), 2, emit).unwrap()
}

/// A product whose operand is reshaped (the im2col matrix of a strided, dilated conv2d) keeps
/// its contraction schedule: elementwise fusion would otherwise propagate the reshape into it
/// and turn it into a generic loop nest without FMAs (codegen/src/mlir.rs, `hide_contractions`).
#[test]
fn a_product_of_a_reshaped_operand_keeps_its_schedule() {
    let artifacts = compile_f(
        "fn f(x: f32[2, 12, 12, 16], w: f32[3, 3, 16, 32]) -> f32[2, 5, 5, 32] { conv2d(x, w, stride=2, padding=1, dilation=2) }",
    );
    assert!(artifacts.asm.unwrap().contains("vfmadd231ps"), "the product lost its contraction schedule");
}

/// A stride-1 convolution runs as the direct kernel: FMAs, and a workspace holding the padded
/// input alone, where im2col would hold nine times the input (codegen/src/lower.rs).
#[test]
fn stride_one_convolutions_need_no_im2col_matrix() {
    let artifacts = compile_f(
        "fn f(x: f32[2, 12, 12, 16], w: f32[3, 3, 16, 32]) -> f32[2, 12, 12, 32] { conv2d(x, w, padding=1) }",
    );
    assert!(artifacts.asm.unwrap().contains("vfmadd231ps"), "the direct convolution has no FMAs");
    assert_eq!(artifacts.workspace, vec![2 * 14 * 14 * 16 * 4], "the padded input only");
}

/// B with rows of a multiple of 256 bytes is read through a copy with rows one cache line
/// longer where the register file's table says it pays (AVX2 and AVX-512 from 512 rows of the
/// product, never on SSE): the copy is the function's workspace.
#[test]
fn products_read_power_of_two_rows_through_a_padded_copy() {
    let workspace = |m: usize, cpu: &str| {
        let text = format!("fn f(a: f32[{m}, 64], b: f32[64, 256]) -> f32[{m}, 256] {{ a @ b }}\nexport f;\n");
        let source = kiln::Source { name: "pad.kn".into(), text };
        let module = kiln::check(&source, "pad").unwrap_or_else(|e| panic!("{}", e.render(false)));
        let target = kiln_codegen::Target::new(None, Some(cpu)).unwrap();
        kiln_codegen::compile(&module, &target, 2, Default::default()).unwrap().workspace
    };
    for cpu in ["x86-64-v3", "x86-64-v4"] {
        assert_eq!(workspace(512, cpu), vec![64 * (256 + 16) * 4], "{cpu}");
        assert_eq!(workspace(256, cpu), vec![0], "{cpu}: 256 rows are too few to pay for the copy");
    }
    assert_eq!(workspace(512, "x86-64"), vec![0], "SSE reads B in place");
}

/// Row groups over shapes drawn per run (rows and columns from 1 to a few hundred: whole lanes
/// or not, parallel or not, rows that fit the stack or not) agree with the interpreter, on 1
/// and 3 threads alike.
#[test]
fn row_groups_on_random_shapes() {
    let mut rng = Rng::new(common::seed());
    let mut text = String::new();
    for i in 0..6 {
        let (rows, cols) = (1 + rng.below(300), 1 + rng.below(700));
        let body = match i % 3 {
            0 => "softmax(x)".to_string(),
            1 => "let d = x - mean(x, axis=1, keepdims=true); d * rsqrt(mean(d * d, axis=1, keepdims=true) + 1e-5) * g"
                .into(),
            _ => "exp(x - max(x, axis=1, keepdims=true)) / sum(abs(x), axis=1, keepdims=true) + g".into(),
        };
        text += &format!(
            "fn r{i}(x: f32[{rows}, {cols}], g: f32[{cols}]) -> f32[{rows}, {cols}] {{ {body} }}\nexport r{i};\n"
        );
    }
    let source = kiln::Source { name: "rows.kn".into(), text: text.clone() };
    let module = kiln::check(&source, "rows").unwrap_or_else(|e| panic!("{}\n{text}", e.render(false)));
    agrees_on_threads(&module, &mut rng, &text);
}

/// Every function of `module`, compiled at -O2, agrees with the interpreter on random
/// arguments and gives the same results on 1 and 3 threads, bit for bit (`context` is
/// printed with a failure).
fn agrees_on_threads(module: &kiln_ir::Module, rng: &mut Rng, context: &str) {
    let loaded = common::compile_and_load(module, 2);
    loaded.use_pool();
    for f in &module.funcs {
        let args: Vec<_> = gen::arguments(rng, f, false);
        kiln_runtime::pool::set_threads(3);
        let threaded = loaded.call(&f.name, &args);
        kiln_runtime::pool::set_threads(1);
        common::check_against_interpreter(&loaded, &f.name, &args, common::Check::Program)
            .unwrap_or_else(|e| panic!("{e}\n{context}"));
        assert!(threaded == loaded.call(&f.name, &args), "`{}` differs between 1 and 3 threads\n{context}", f.name);
    }
}

/// Twenty row groups in one function share one stack arena of one group's rows: loops never
/// run at once (a sum of their rows failed the stack limit at 304 KiB).
#[test]
fn row_groups_share_one_stack_arena() {
    let body: Vec<String> = (1..=20).map(|i| format!("softmax(x * {i}.0)")).collect();
    let text = format!("fn f(x: f32[64, 4096]) -> f32[64, 4096] {{ {} }}\nexport f;\n", body.join(" + "));
    let module = kiln::check(&kiln::Source { name: "many.kn".into(), text }, "many").unwrap();
    let artifacts = kiln_codegen::compile(&module, &kiln_codegen::Target::default(), 2, Default::default()).unwrap();
    assert_eq!(artifacts.stack, vec![4096 * 4], "one row of f32 on the stack");
    let loaded = common::compile_and_load(&module, 2);
    let mut rng = Rng::new(common::seed());
    let args = vec![gen::tensor(&mut rng, &module.funcs[0].params[0].ty, false)];
    common::check_against_interpreter(&loaded, "f", &args, common::Check::Program).unwrap();
}

/// Chains of centerings (`y - mean(y) * 0.5`, each step reading the last twice) form row groups
/// of at most 32 generics (codegen/src/schedule/rows.rs): ten steps make one group, forty make
/// several, and both agree with the interpreter. Fusing a producer read twice makes two tiled
/// copies; unmerged, ten steps made 2^10 of them and the build ran for minutes.
#[test]
fn chains_of_centerings_group_in_bounded_row_groups() {
    for (steps, groups) in [(10, 1..=1), (40, 2..=4)] {
        let lets: String = (1..=steps)
            .map(|i| format!("let y{i} = y{} - mean(y{}, axis=1, keepdims=true) * 0.5; ", i - 1, i - 1))
            .collect();
        let text = format!("fn f(x: f32[16, 64]) -> f32[16, 64] {{ let y0 = x; {lets}y{steps} }}\nexport f;\n");
        let module = kiln::check(&kiln::Source { name: "chain.kn".into(), text }, "chain").unwrap();
        let emit = kiln_codegen::Emit { mlir: true, ..Default::default() };
        let artifacts = kiln_codegen::compile(&module, &kiln_codegen::Target::default(), 2, emit).unwrap();
        let loops = artifacts.mlir.unwrap().matches("\"kiln.rows\"").count();
        assert!(groups.contains(&loops), "{steps} steps: {loops} row groups, expected {groups:?}");
        let loaded = common::compile_and_load(&module, 2);
        let mut rng = Rng::new(common::seed());
        let args = vec![gen::tensor(&mut rng, &module.funcs[0].params[0].ty, false)];
        common::check_against_interpreter(&loaded, "f", &args, common::Check::Program).unwrap();
    }
}

/// The parallel loops inside a fold's body and the gradient's reverse scan (products, row
/// groups with their rows on each thread's stack, elementwise chains) run on threads, taking
/// the step's index from the caller.
/// Results equal the interpreter's and are the same on 1 and 3 threads, bit for bit.
#[test]
fn loop_bodies_run_on_threads_alike() {
    let text = "fn layer(h: f32[8, 16, 256], w: f32[256, 256], b: f32[256]) -> f32[8, 16, 256] {
    let z = h @ w + b;
    let d = z - mean(z, axis=-1, keepdims=true);
    d * rsqrt(mean(d * d, axis=-1, keepdims=true) + 1e-5) + tanh(h)
}
fn forward(x: f32[8, 16, 256], ws: f32[3, 256, 256], bs: f32[3, 256]) -> f32[8, 16, 256] {
    loop h = x for (w, b) in (ws, bs) { layer(h, w, b) }
}
fn loss(x: f32[8, 16, 256], ws: f32[3, 256, 256], bs: f32[3, 256]) -> f32 {
    let h = forward(x, ws, bs);
    sum(h * h)
}
export forward;
export value_and_grad(loss, wrt=[x, ws, bs]) as step;
";
    let source = kiln::Source { name: "fold.kn".into(), text: text.into() };
    let module = kiln::check(&source, "fold").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let options = kiln::Options { dump_after: vec!["outline-parallel".into()], ..kiln::Options::default() };
    let out = kiln::build(&source, &options).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let outlined = &out.dumps.iter().find(|(n, _)| n == "after-outline-parallel.mlir").expect("a dump").1;
    // Stages of loops in a loop's body take the step's index in a slot; the layer norm's row
    // group keeps its rows in the stack arena, which each stage call makes its own.
    let nested = outlined.matches("memref<1xi64> {llvm.noalias, llvm.readonly}").count();
    assert!(nested >= 4, "{nested} stages of nested loops\n{outlined}");
    let forward = outlined.split("func.func private @fold_step_impl(").next().unwrap();
    assert!(!forward.contains("kiln.parallel"), "a loop of `forward` left serial\n{forward}");
    let stages = forward.split("func.func private @fold_forward_impl_par").skip(1);
    assert!(
        stages.filter(|s| s.contains("xi8>") && s.contains("memref.alloca() {alignment = 64 : i64} : memref<")).count()
            > 0,
        "{forward}"
    );
    agrees_on_threads(&module, &mut Rng::new(common::seed()), text);
}

/// Sorts run their rows on threads: the radix sort's counting, prefix and scatter loops and
/// the merge sort's passes each become a stage (every loop left marked `kiln.parallel` would
/// have stayed serial), and the positions agree with the interpreter, bit for bit on 1 and 3
/// threads.
#[test]
fn sorts_run_their_rows_on_threads() {
    let text = "fn radix(x: f32[48, 3000]) -> i32[48, 3000] { argsort(x, axis=1) }
fn merged(k: i32[4096, 40]) -> i32[4096, 40] { argsort(k, axis=1, descending=true) }
export radix;
export merged;
";
    let source = kiln::Source { name: "sorts.kn".into(), text: text.into() };
    let module = kiln::check(&source, "sorts").unwrap_or_else(|e| panic!("{}", e.render(false)));
    let options = kiln::Options { dump_after: vec!["outline-parallel".into()], ..kiln::Options::default() };
    let out = kiln::build(&source, &options).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let outlined = &out.dumps.iter().find(|(n, _)| n == "after-outline-parallel.mlir").expect("a dump").1;
    assert!(!outlined.contains("kiln.parallel"), "a sort's loop left serial\n{outlined}");
    // Counting, prefix sums and four scatters; six merge passes.
    for (function, loops) in [("radix", 6), ("merged", 6)] {
        let stages = outlined.matches(&format!("func.func private @sorts_{function}_impl_par")).count();
        assert!(stages >= loops, "{stages} stages in `{function}`\n{outlined}");
    }
    agrees_on_threads(&module, &mut Rng::new(common::seed()), text);
}
