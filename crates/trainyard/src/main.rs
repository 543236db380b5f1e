//! The `trainyard` binary: parses arguments, runs the command, owns exit codes and printing.

mod cmd;

use std::process::ExitCode;

use clap::Parser;
use trainyard::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAINYARD_LOG")
                .unwrap_or_else(|_| cmd::default_log_filter(&cli).into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trainyard: starting the async runtime: {e}");
            return ExitCode::from(cmd::FAILED);
        }
    };
    match rt.block_on(cmd::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(cmd::Exit(code, msg)) = e.downcast_ref::<cmd::Exit>() {
                eprintln!("trainyard: {msg}");
                return ExitCode::from(*code);
            }
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("trainyard: {e:#}");
            ExitCode::from(cmd::FAILED)
        }
    }
}
