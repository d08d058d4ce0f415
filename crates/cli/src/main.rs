//! The `custodian` binary: parse the command line, run the command, map failures to exit codes.

mod args;
mod commands;
mod exit;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    commands::init_logging(cli.log_format);
    match commands::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
