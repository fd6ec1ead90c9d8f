//! kiln-passes: IR-to-IR transformations and the pass pipeline.
//!
//! Owns: the pipeline ([`run_pipeline`]), one function of named steps, and the passes it runs.
//! Today the steps are dead-code elimination and verification; autodiff and equality
//! saturation join as steps of their own (see the issues), each with its dump name.
//!
//! May depend on: kiln-ir (and egg, once equality saturation lands).
//!
//! Guarantees: every step maps a verified module to a verified module with the same
//! interpreter results; the pipeline verifies after each step and reports a compiler bug if a
//! step breaks an invariant.

pub mod autodiff;
pub mod dce;
pub mod stats;

use kiln_ir::Module;
use std::time::{Duration, Instant};

/// One named step: its name is its dump name (`--dump-after=NAME`) and its timing label.
pub struct Step {
    pub name: &'static str,
    pub run: fn(&mut Module),
}

/// The pipeline, in order.
pub const STEPS: &[Step] = &[Step { name: "dce", run: dce::run }];

/// What the pipeline did: the time of each step, and the module after each step named in
/// `dump_after`.
#[derive(Debug, Default)]
pub struct PipelineReport {
    pub timings: Vec<(String, Duration)>,
    pub dumps: Vec<(String, String)>,
}

/// Runs every step of [`STEPS`] on `module`, verifying after each. An invariant broken by a
/// step is a compiler bug, returned as the error.
pub fn run_pipeline(module: &mut Module, dump_after: &[String]) -> Result<PipelineReport, String> {
    let mut report = PipelineReport::default();
    for step in STEPS {
        let start = Instant::now();
        (step.run)(module);
        kiln_ir::verify::verify_module(module).map_err(|e| format!("after step `{}`: {e}", step.name))?;
        report.timings.push((step.name.to_string(), start.elapsed()));
        if dump_after.iter().any(|d| d == step.name) {
            report.dumps.push((step.name.to_string(), kiln_ir::text::print_module(module)));
        }
    }
    Ok(report)
}

/// The names of all steps, for `--dump-after` validation.
pub fn step_names() -> Vec<&'static str> {
    STEPS.iter().map(|s| s.name).collect()
}
