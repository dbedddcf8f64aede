//! `siphon`: the command-line program. Exit status: 0 success, 1 run-time failure, 2 usage.

use std::process::ExitCode;

use clap::Parser;
use siphon::app::{self, Failure};
use siphon::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("siphon: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Runtime(message)) => {
            eprintln!("siphon: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("siphon: {message}");
            ExitCode::from(2)
        }
    }
}
