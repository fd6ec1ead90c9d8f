//! Reading MLIR as kiln's pipeline prints it: the few facts about a line that the last
//! text-level rewrite, the GPU's block reductions ([`super::reduce`]), needs. Lines are one op
//! each, as MLIR's printer writes them. This module goes when that rewrite works in memory
//! (issue #16).

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
