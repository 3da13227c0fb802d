//! The `cria` binary: a thin entry point; the verbs live in `cria::cli`.
fn main() {}
