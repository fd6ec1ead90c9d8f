//! kiln-passes: IR-to-IR transformations and the pass pipeline.
//!
//! Owns: the pipeline ([`run_pipeline`]), one list of named steps, and the passes: equality
//! saturation ([`saturate`]), early exit for bounded while loops ([`early_exit`]), loop-invariant
//! code motion ([`licm`]), dead-code elimination
//! ([`dce`]), automatic differentiation
//! ([`autodiff`]) and batching ([`vmap`]), applied where the program asks for them, and static
//! statistics ([`stats`]).
//!
//! May depend on: kiln-ir and egg.
//!
//! Guarantees: every step maps a verified module to a verified module with the same
//! interpreter results (bit for bit unless fast-math is on); the pipeline verifies after each
//! step and reports a compiler bug if a step breaks an invariant.

pub mod autodiff;
pub mod dce;
pub mod early_exit;
pub mod licm;
pub mod saturate;
pub mod stats;
pub mod vmap;

use kiln_ir::Module;
use std::time::{Duration, Instant};

/// Options of the pipeline.
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// Steps after which to print the module.
    pub dump_after: Vec<String>,
    pub saturate: saturate::Options,
}

/// What the pipeline did: the time of each step, the module after each step named in
/// `dump_after`, and what equality saturation did to each function.
#[derive(Debug, Default)]
pub struct PipelineReport {
    pub timings: Vec<(String, Duration)>,
    pub dumps: Vec<(String, String)>,
    pub saturation: Vec<saturate::Report>,
}

/// One named step: its name is its dump name (`--dump-after=NAME`) and its timing label.
pub struct Step {
    pub name: &'static str,
    pub run: fn(&mut Module, &PipelineOptions, &mut PipelineReport),
}

/// The pipeline, in order: move loop invariants out of loops (derivatives are already in the
/// module), saturate, then remove what no result needs.
pub const STEPS: &[Step] = &[
    Step { name: "early-exit", run: |m, _, _| early_exit::run(m) },
    Step { name: "licm", run: |m, _, _| licm::run(m) },
    Step { name: "saturate", run: |m, o, r| r.saturation = saturate::saturate_module(m, &o.saturate) },
    Step { name: "dce", run: |m, _, _| dce::run(m) },
];

/// Runs every step of [`STEPS`] on `module`, verifying after each. An invariant broken by a
/// step is a compiler bug, returned as the error.
pub fn run_pipeline(module: &mut Module, options: &PipelineOptions) -> Result<PipelineReport, String> {
    let mut report = PipelineReport::default();
    for step in STEPS {
        let start = Instant::now();
        (step.run)(module, options, &mut report);
        kiln_ir::verify::verify_module(module).map_err(|e| format!("after step `{}`: {e}", step.name))?;
        report.timings.push((step.name.to_string(), start.elapsed()));
        if options.dump_after.iter().any(|d| d == step.name || d == "all") {
            report.dumps.push((step.name.to_string(), kiln_ir::text::print_module(module)));
        }
    }
    Ok(report)
}

/// The names of all steps, for `--dump-after` validation.
pub fn step_names() -> Vec<&'static str> {
    STEPS.iter().map(|s| s.name).collect()
}
