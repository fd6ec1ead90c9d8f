fn main() {
    let path = std::env::args().nth(1).unwrap();
    let src = std::fs::read_to_string(&path).unwrap();
    match kiln_frontend::compile_source(&src, "mlp") {
        Ok(m) => print!("{}", kiln_ir::text::print_module(&m)),
        Err(d) => eprint!("{}", kiln_frontend::render_diagnostic(&d, &path, &src, false)),
    }
}
