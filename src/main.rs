//! The `netwatch` command line: argument parsing and output only; every
//! operation is a library function in [`netwatch::watcher`].

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    cli::run()
}
