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
