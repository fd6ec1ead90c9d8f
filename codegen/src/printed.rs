//! Reading MLIR as kiln's pipeline prints it: the few facts about a line that the text-level
//! rewrites (workspace views, parallel stages, GPU launch plans) need. Lines are one op each,
//! as MLIR's printer writes them.

/// The SSA names (`%x`) in a line, in order.
pub fn names(line: &str) -> impl Iterator<Item = &str> {
    line.match_indices('%').map(move |(i, _)| {
        let rest = &line[i + 1..];
        let end =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.')).unwrap_or(rest.len());
        &line[i..i + 1 + end]
    })
}

/// The names a line defines: results (`%x = `, `%x:2 = `), loop variables and `iter_args`
/// (`%i = `), block arguments (`%a: f32`).
pub fn definitions(line: &str) -> impl Iterator<Item = &str> {
    line.match_indices('%').filter_map(move |(i, _)| {
        let name = names(&line[i..]).next()?;
        let after = &line[i + name.len()..];
        (after.starts_with(" = ") || after.starts_with(':')).then_some(name)
    })
}

/// The name a top-level line defines (`%x = ...` or `%x:2 = ...`), if any.
pub fn defined(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (lhs, _) = t.split_once(" = ")?;
    lhs.starts_with('%').then(|| lhs.split(':').next().unwrap_or(lhs))
}

/// The `index` constants that `lines` define: name to value.
pub fn index_constants<'t>(lines: impl Iterator<Item = &'t str>) -> std::collections::BTreeMap<&'t str, i64> {
    let mut constants = std::collections::BTreeMap::new();
    for line in lines {
        let t = line.trim_start();
        if let (Some(name), Some(rest)) = (defined(line), t.split(" = arith.constant ").nth(1)) {
            if let Some(v) = rest.strip_suffix(" : index").and_then(|v| v.parse().ok()) {
                constants.insert(name, v);
            }
        }
    }
    constants
}

/// An `scf.for` of printed lines: its header and closing line (indices), induction variable,
/// bounds and step (SSA names).
pub struct Loop {
    pub header: usize,
    pub close: usize,
    pub iv: String,
    pub lower: String,
    pub upper: String,
    pub step: String,
}

/// The loop whose header is `lines[at]` (`[%r = ]scf.for %iv = %lb to %ub step %s ...`), if
/// it is one; it closes at the next line of its indentation that starts with `}`.
pub fn loop_at(lines: &[&str], at: usize) -> Option<Loop> {
    let line = lines[at];
    let rest = line.trim_start().split_once("scf.for ").map(|(_, r)| r)?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [iv, "=", lower, "to", upper, "step", step, ..] = words.as_slice() else { return None };
    let depth = indent(line);
    let close = (at + 1..lines.len()).find(|&j| indent(lines[j]) == depth && lines[j].trim_start().starts_with('}'))?;
    let name = |s: &str| s.to_string();
    Some(Loop { header: at, close, iv: name(iv), lower: name(lower), upper: name(upper), step: name(step) })
}

/// The leading-space indentation of a line.
pub fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// What follows `%x = ` in a line that defines a result; the whole (trimmed) line otherwise.
pub fn rhs(line: &str) -> &str {
    let t = line.trim_start();
    t.split_once(" = ").filter(|(lhs, _)| lhs.starts_with('%')).map_or(t, |(_, rhs)| rhs)
}

/// The op name of a line (`%x = op ...` or `op ...`).
pub fn op_name(line: &str) -> &str {
    rhs(line).split([' ', '(']).next().unwrap_or("")
}
