//! `kiln bench`: the CPU benchmark suite. Each program is compiled by kiln (as a shared
//! library, loaded with kiln-runtime) and timed; figures are reported against machine limits
//! measured in the same run: copy bandwidth (a large memcpy) and, when Python with numpy is
//! available, OpenBLAS sgemm through numpy.

use crate::{build, write_output, Error, Options, OutputKind, Source};
use kiln_runtime::Bundle;
use std::time::Instant;

/// One benchmark: a program exporting `f`, and whether it is judged by FLOPs or bytes.
struct Case {
    name: &'static str,
    source: String,
    compute_bound: bool,
    /// A loop of `count` steps: a program exporting one step as `f`, timed alone for the
    /// comparison with `count` such steps.
    step: Option<(String, usize)>,
    /// The same computation in JAX: Python defining `f` on the same parameters, jitted and
    /// timed on the same inputs when `--python` has JAX.
    jax: Option<String>,
}

impl Case {
    fn new(name: &'static str, source: impl Into<String>, compute_bound: bool) -> Case {
        Case { name, source: source.into(), compute_bound, step: None, jax: None }
    }
}

/// The recurrent cell of the loop benchmarks: batch 32, width 128, over `T` steps.
const CELL: &str =
    "fn cell(h: f32[32, 128], x: f32[32, 128], w: f32[128, 128], u: f32[128, 128], b: f32[128]) -> f32[32, 128] {
    tanh(h @ w + x @ u + b)
}
";
const STEPS: usize = 64;

fn cases() -> Vec<Case> {
    let mlp = "fn dense(x: f32[B, I], w: f32[I, O], b: f32[O]) -> f32[B, O] { x @ w + b }
fn loss(x: f32[256, 784], labels: i32[256], w1: f32[784, 512], b1: f32[512], w2: f32[512, 512],
        b2: f32[512], w3: f32[512, 10], b3: f32[10]) -> f32 {
    let h1 = relu(dense(x, w1, b1));
    let h2 = relu(dense(h1, w2, b2));
    mean(cross_entropy(dense(h2, w3, b3), labels))
}\n";
    vec![
        Case::new("matmul 1024^3", "fn f(a: f32[1024, 1024], b: f32[1024, 1024]) -> f32[1024, 1024] { a @ b }", true),
        Case {
            // JAX's time includes converting its f32 inputs (2 M elements, against 2 GFLOP).
            jax: Some("def f(a, b):\n    return a.astype(jnp.bfloat16) @ b.astype(jnp.bfloat16)\n".into()),
            ..Case::new(
                "matmul 1024^3 bf16 (accumulating in f32)",
                "fn f(a: bf16[1024, 1024], b: bf16[1024, 1024]) -> bf16[1024, 1024] { a @ b }",
                true,
            )
        },
        Case::new("matmul 256x4096x256", "fn f(a: f32[256, 4096], b: f32[4096, 256]) -> f32[256, 256] { a @ b }", true),
        Case {
            jax: Some("def f(x, a, b):\n    return jnp.tanh(x * a + b) * jax.nn.sigmoid(x)\n".into()),
            ..Case::new("tanh(x*a+b)*sigmoid(x) 16M", "fn f(x: f32[16777216], a: f32, b: f32) -> f32[16777216] { tanh(x * a + b) * sigmoid(x) }", false)
        },
        Case::new("softmax 4096x1024", "fn f(x: f32[4096, 1024]) -> f32[4096, 1024] { softmax(x) }", false),
        Case::new("layernorm 4096x1024", "fn f(x: f32[4096, 1024], g: f32[1024], b: f32[1024]) -> f32[4096, 1024] {
    let m = mean(x, axis=1, keepdims=true);
    let d = x - m;
    let v = mean(d * d, axis=1, keepdims=true);
    d * rsqrt(v + 1e-5) * g + b
}"
            , false),
        Case::new("sum 64M", "fn f(x: f32[67108864]) -> f32 { sum(x) }", false),
        Case::new("MLP 784-512-512-10 forward, batch 256", format!("{mlp}export loss as f;"), true),
        Case::new("MLP value_and_grad", format!("{mlp}export value_and_grad(loss, wrt=[w1, b1, w2, b2, w3, b3]) as f;"), true),
        Case::new("conv 3x3, 64->64, batch 8, 56x56", "fn f(x: f32[8, 56, 56, 64], w: f32[3, 3, 64, 64]) -> f32[8, 56, 56, 64] { conv2d(x, w, padding=1) }"
                    , true),
        Case::new("conv 3x3 stride 2, 64->128, batch 8, 56x56", "fn f(x: f32[8, 56, 56, 64], w: f32[3, 3, 64, 128]) -> f32[8, 28, 28, 128] { conv2d(x, w, stride=2, padding=1) }"
                , true),
        Case::new("conv value_and_grad (x and w)", "fn loss(x: f32[8, 56, 56, 64], w: f32[3, 3, 64, 64]) -> f32 { sum(tanh(conv2d(x, w, padding=1))) }
export value_and_grad(loss, wrt=[x, w]) as f;"
                , true),
        Case::new("attention 512x64", "fn f(q: f32[512, 64], k: f32[512, 64], v: f32[512, 64]) -> f32[512, 64] {
    softmax(q @ transpose(k) * 0.125) @ v
}"
            , true),
        Case {
            jax: Some("def f(a, b, v):\n    return a @ (b @ v)\n".into()),
            ..Case::new(
                "A @ (B @ v), 2048 (two matrix-vector products)",
                "fn f(a: f32[2048, 2048], b: f32[2048, 2048], v: f32[2048]) -> f32[2048] { a @ (b @ v) }",
                false,
            )
        },
        Case {
            jax: Some("def f(x):\n    return jnp.argsort(x, axis=1)\n".into()),
            ..Case::new("argsort 64x50000 (rows, stable)", "fn f(x: f32[64, 50000]) -> i32[64, 50000] { argsort(x, axis=1) }", false)
        },
        Case {
            step: Some((format!("{CELL}export cell as f;"), STEPS)),
            jax: Some(JAX_RNN_FORWARD.into()),
            ..Case::new("RNN 32x128, 64 steps (a fold over rows)", format!("{CELL}{RNN_PARAMS} -> f32[32, 128] {{
    loop h = h0 for x in xs {{ cell(h, x, w, u, b) }}
}}"), true)
        },
        Case {
            jax: Some(JAX_RNN_GRAD.into()),
            ..Case::new("RNN 32x128, 64 steps, value_and_grad (scan)", format!("{CELL}{} -> f32 {{
    let (_, hs) = scan h = h0 for x in xs {{ let next = cell(h, x, w, u, b); (next, next) }};
    sum(hs * hs)
}}
export value_and_grad(loss, wrt=[h0, xs, w, u, b]) as f;", RNN_PARAMS.replace("fn f", "fn loss")), true)
        },
        Case {
            jax: Some(jax_gpt_step()),
            ..Case::new("GPT training step (examples/gpt: 4 layers, width 128, batch 16x64, AdamW)", gpt_step(), true)
        },
    ]
}

/// examples/gpt/gpt.kn with its training step exported as `f`.
fn gpt_step() -> String {
    let model = GPT.split("\nexport ").next().expect("gpt.kn has exports");
    format!("{model}\nexport step as f;\n")
}

const GPT: &str = include_str!("../examples/gpt/gpt.kn");

/// The same step in JAX: scripts/jax_fixture.py's `gpt_step` (the script without its main
/// block), on the token codes kiln's benchmark passes (zeros).
fn jax_gpt_step() -> String {
    let script = include_str!("../scripts/jax_fixture.py");
    let definitions = script.split("\nif __name__ == \"__main__\":").next().expect("the script's definitions");
    format!(
        "{definitions}\ndef f(p, m, v, t, text):\n    return gpt_step(p, m, v, t, jnp.zeros(text.shape, jnp.int32))\n"
    )
}

/// The parameters of the RNN benchmarks.
const RNN_PARAMS: &str =
    "fn f(h0: f32[32, 128], xs: f32[64, 32, 128], w: f32[128, 128], u: f32[128, 128], b: f32[128])";

const JAX_RNN_FORWARD: &str = "def f(h0, xs, w, u, b):
    return jax.lax.scan(lambda h, x: (jnp.tanh(h @ w + x @ u + b), None), h0, xs)[0]
";

const JAX_RNN_GRAD: &str = "def loss(h0, xs, w, u, b):
    def step(h, x):
        n = jnp.tanh(h @ w + x @ u + b)
        return n, n
    return jnp.sum(jax.lax.scan(step, h0, xs)[1] ** 2)
f = jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4))
";

/// The median of `runs` timings of `f`, in seconds.
fn median_time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Copy bandwidth of this machine in GB/s (reads plus writes of a 256 MiB copy).
fn copy_bandwidth(runs: usize) -> f64 {
    let src = vec![1u8; 256 << 20];
    let mut dst = vec![0u8; 256 << 20];
    let t = median_time(runs, || dst.copy_from_slice(std::hint::black_box(&src)));
    2.0 * src.len() as f64 / t / 1e9
}

/// How the peers are held to the instruction set kiln targets, so that the comparison is
/// like for like: for x86-64-v3 (kiln's default target), OpenBLAS's Haswell kernels and XLA
/// at AVX2 at most; for other targets (`native` included), nothing.
struct PeerIsa {
    /// OPENBLAS_CORETYPE, if held.
    openblas: Option<&'static str>,
    /// Flags added to XLA_FLAGS.
    xla: &'static str,
}

impl PeerIsa {
    fn for_target(cpu: &str) -> PeerIsa {
        match cpu {
            "x86-64-v3" => PeerIsa { openblas: Some("Haswell"), xla: "--xla_cpu_max_isa=AVX2" },
            _ => PeerIsa { openblas: None, xla: "" },
        }
    }

    /// The header's account of it.
    fn describe(&self) -> String {
        match self.openblas {
            Some(core) => {
                format!("Peers held to the target's instructions: OPENBLAS_CORETYPE={core}, XLA_FLAGS {}.", self.xla)
            }
            None => "Peers use every instruction this CPU has.".into(),
        }
    }

    /// `command` with the environment that holds the peers.
    fn apply<'a>(&self, command: &'a mut std::process::Command) -> &'a mut std::process::Command {
        if let Some(core) = self.openblas {
            command.env("OPENBLAS_CORETYPE", core);
        }
        command
    }
}

/// OpenBLAS sgemm 1024^3 through numpy, in GFLOP/s, if `python` has numpy.
fn numpy_sgemm(python: &str, runs: usize, threads: usize, peers: &PeerIsa) -> Option<f64> {
    let script = format!(
        "import numpy as np, time\na = np.random.rand(1024, 1024).astype(np.float32)\nb = np.random.rand(1024, 1024).astype(np.float32)\na @ b\nt = []\nfor _ in range({runs}):\n    s = time.perf_counter(); a @ b; t.append(time.perf_counter() - s)\nt.sort()\nprint(2 * 1024**3 / t[len(t) // 2] / 1e9)\n"
    );
    // As many threads as kiln's code gets.
    let out = peers
        .apply(&mut std::process::Command::new(python))
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .args(["-c", &script])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Seconds per call of the function `f` that `definition` defines, jitted by JAX under
/// `python` on `threads` threads, on float32 inputs of `shapes` filled as [`measure`] fills
/// kiln's; None when `python` has no JAX.
fn jax_time(
    python: &str,
    definition: &str,
    shapes: &[Vec<usize>],
    runs: usize,
    threads: usize,
    peers: &PeerIsa,
) -> Option<f64> {
    let shapes: Vec<String> = shapes.iter().map(|s| format!("{s:?}")).collect();
    // XLA's flags leave its CPU client threads of its own (jax 0.10 runs its products on
    // both cores of a 2-core host with them set): the process is confined to `threads` CPUs
    // before JAX starts, as kiln's code runs on `threads` threads.
    let script = format!(
        "import os, time\nos.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:{threads}])\n\
         import numpy as np, jax, jax.numpy as jnp\n{definition}\n\
         args = [jnp.asarray({JAX_INPUT}) for s in [{}]]\n\
         g = jax.jit(f)\njax.block_until_ready(g(*args))\nt = []\nfor _ in range({runs}):\n    \
         s = time.perf_counter(); jax.block_until_ready(g(*args)); t.append(time.perf_counter() - s)\n\
         t.sort()\nprint(t[len(t) // 2])\n",
        shapes.join(", ")
    );
    let single = if threads == 1 { "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" } else { "" };
    let out = peers
        .apply(&mut std::process::Command::new(python))
        .env("XLA_FLAGS", format!("{single} {}", peers.xla).trim())
        .env("JAX_PLATFORMS", "cpu")
        .args(["-c", &script])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Options of `kiln bench`.
pub struct BenchOptions {
    pub target_cpu: Option<String>,
    pub runs: usize,
    pub python: String,
    pub filter: Option<String>,
    /// Threads for parallel loops (and for OpenBLAS).
    pub threads: usize,
}

/// One compiled and timed program.
struct Measured {
    output: crate::Output,
    /// Seconds to compile.
    compile: f64,
    /// Median seconds per call.
    time: f64,
    /// Bytes of the inputs and outputs.
    bytes: usize,
    /// The parameters' shapes.
    shapes: Vec<Vec<usize>>,
}

/// Element `k` of every float input, kiln's and JAX's: in [-0.5, 0.5), exact in f32, and
/// scattered by a 64-bit mixing function (two rounds of multiply and xor-shift, as splitmix64
/// finishes), so that a sort sees distinct keys in no order rather than a short repeating
/// pattern or runs. [`JAX_INPUT`] computes the same values.
fn input_value(k: usize) -> f32 {
    let mut x = (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 32;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 32;
    (x >> 40) as f32 / (1u32 << 24) as f32 - 0.5
}

/// [`input_value`] in numpy (whose uint64 arithmetic wraps), for an input of shape `s`.
const JAX_INPUT: &str = "(lambda x: (lambda x: ((x ^ (x >> 32)) >> 40).astype(np.float32) / 2**24 - 0.5)(\
(x ^ (x >> 32)) * np.uint64(0xD6E8FEB86659FD93)))(np.arange(int(np.prod(s)), dtype=np.uint64) * \
np.uint64(0x9E3779B97F4A7C15)).reshape(s)";

/// Compiles `text` (which exports `f`) as shared library number `i` under `dir`, and times
/// calls of `f` on fixed inputs with a caller-provided workspace.
fn measure(
    dir: &std::path::Path,
    i: usize,
    text: String,
    target: &kiln_codegen::Target,
    runs: usize,
) -> Result<Measured, Error> {
    let source = Source { name: format!("bench{i}.kn"), text };
    let build_options = Options {
        output: OutputKind::Shared,
        target: target.clone(),
        module_name: Some(format!("bench{i}")),
        emit: vec![crate::EmitKind::Opt, crate::EmitKind::Obj],
        ..Options::default()
    };
    let start = Instant::now();
    let output = build(&source, &build_options)?;
    let compile = start.elapsed().as_secs_f64();
    let sub = dir.join(format!("b{i}"));
    write_output(&output, &sub)?;
    let bundle = Bundle::open(&sub.join(format!("bench{i}.json"))).map_err(|e| Error::Internal(e.to_string()))?;
    let f = bundle.function("f").ok_or_else(|| Error::Internal("no function f".into()))?;
    let inputs: Vec<Vec<u8>> = f
        .params
        .iter()
        .map(|p| match p.dtype {
            kiln_runtime::DType::F32 => (0..p.bytes / 4).flat_map(|k| input_value(k).to_ne_bytes()).collect(),
            // The same values rounded to bf16, as JAX's astype rounds them.
            kiln_runtime::DType::BF16 => {
                (0..p.bytes / 2).flat_map(|k| half::bf16::from_f32(input_value(k)).to_bits().to_ne_bytes()).collect()
            }
            _ => vec![0u8; p.bytes],
        })
        .collect();
    let mut outputs: Vec<Vec<u8>> = f.results.iter().map(|r| vec![0u8; r.bytes]).collect();
    let mut workspace = vec![0u8; f.workspace_bytes + 64];
    let offset = workspace.as_ptr().align_offset(64);
    let bytes: usize = f.params.iter().chain(&f.results).map(|a| a.bytes).sum();
    let shapes = f.params.iter().map(|p| p.shape.iter().map(|&d| d as usize).collect()).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut call_error = None;
    let time = median_time(runs, || {
        let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        let ws = &mut workspace[offset..offset + f.workspace_bytes];
        if let Err(e) = bundle.call_with_workspace("f", &refs, &mut outs, ws) {
            call_error = Some(e);
        }
    });
    match call_error {
        Some(e) => Err(Error::Internal(e.to_string())),
        None => Ok(Measured { output, compile, time, bytes, shapes }),
    }
}

/// A program of one product for each `dot` in the optimized IR of `output`, in order; none for
/// a program with loops or conditionals, whose bodies' products run any number of times (the
/// GPT step's column read 1000x: its top-level products against the whole step).
fn products(output: &crate::Output) -> Result<Vec<String>, Error> {
    let text = output.dumps.iter().find(|(ext, _)| ext == "opt.kir").map(|(_, t)| t.as_str()).unwrap_or("");
    let module = kiln_ir::text::parse_module(text).map_err(|d| Error::Internal(d.message))?;
    if module.funcs.iter().flat_map(|f| &f.insts).any(|inst| inst.op.bodies().is_some()) {
        return Ok(vec![]);
    }
    let mut programs = vec![];
    for func in &module.funcs {
        for inst in func.insts.iter().filter(|inst| inst.op == kiln_ir::Op::Dot) {
            let (a, b) = (func.ty(inst.args[0]), func.ty(inst.args[1]));
            programs.push(format!("fn f(a: {a}, b: {b}) -> {} {{ a @ b }}\nexport f;\n", inst.ty));
        }
    }
    Ok(programs)
}

/// Runs the suite and returns the report as a Markdown table.
pub fn run(options: &BenchOptions) -> Result<String, Error> {
    let target = kiln_codegen::Target::new(None, options.target_cpu.as_deref()).map_err(Error::Usage)?;
    let bandwidth = copy_bandwidth(options.runs);
    let peers = PeerIsa::for_target(&target.cpu);
    let sgemm = numpy_sgemm(&options.python, options.runs, options.threads, &peers);
    kiln_runtime::pool::set_threads(options.threads);
    let mut out = format!(
        "Target CPU {}; {} runs each, median; {} thread(s). {}\nCopy bandwidth: {bandwidth:.1} GB/s. numpy sgemm 1024^3: {}.\n\n\
         | benchmark | compile | time | rate | of the limit | time / its products' | time / its steps alone | time / JAX's |\n\
         |---|---|---|---|---|---|---|---|\n",
        target.cpu,
        options.runs,
        options.threads,
        peers.describe(),
        sgemm.map_or("unavailable (no numpy)".to_string(), |g| format!("{g:.1} GFLOP/s"))
    );
    let dir = tempfile::tempdir().map_err(|e| Error::Usage(e.to_string()))?;
    let mut product_times: std::collections::BTreeMap<String, f64> = Default::default();
    let mut next = 0;
    for case in cases() {
        if options.filter.as_deref().is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let text =
            if case.source.contains("export ") { case.source.clone() } else { format!("{}\nexport f;\n", case.source) };
        next += 1;
        let m = measure(dir.path(), next, text, &target, options.runs)?;
        let flops: u64 = m.output.saturation.iter().map(|r| r.flops.1).sum();
        let (rate, fraction) = if case.compute_bound {
            let g = flops as f64 / m.time / 1e9;
            (format!("{g:.2} GFLOP/s"), sgemm.map_or("-".into(), |s| format!("{:.1}% of sgemm", 100.0 * g / s)))
        } else {
            let g = m.bytes as f64 / m.time / 1e9;
            (format!("{g:.2} GB/s"), format!("{:.1}% of copy", 100.0 * g / bandwidth))
        };
        // A program with several products is compared with the time of its products alone.
        let programs = products(&m.output)?;
        let versus = if programs.len() > 1 {
            let mut total = 0.0;
            for program in programs {
                if !product_times.contains_key(&program) {
                    next += 1;
                    let p = measure(dir.path(), next, program.clone(), &target, options.runs)?;
                    product_times.insert(program.clone(), p.time);
                }
                total += product_times[&program];
            }
            format!("{:.2}x", m.time / total)
        } else {
            "-".into()
        };
        // A loop is compared with its steps compiled alone, and a case with JAX's code.
        let steps = match &case.step {
            Some((program, count)) => {
                next += 1;
                let step = measure(dir.path(), next, program.clone(), &target, options.runs)?;
                format!("{:.2}x", m.time / (*count as f64 * step.time))
            }
            None => "-".into(),
        };
        let jax = case.jax.map_or("-".into(), |definition| {
            jax_time(&options.python, &definition, &m.shapes, options.runs, options.threads, &peers)
                .map_or("no JAX".into(), |t| format!("{:.2}x", m.time / t))
        });
        out.push_str(&format!(
            "| {} | {:.2} s | {:.3} ms | {rate} | {fraction} | {versus} | {steps} | {jax} |\n",
            case.name,
            m.compile,
            m.time * 1e3
        ));
    }
    Ok(out)
}
