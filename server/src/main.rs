//! The `cria` binary: parses the command line and hands over to a verb in
//! [`cli`]. With no verb it speaks the Language Server Protocol over stdio.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
