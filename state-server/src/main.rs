//! `state-server`: parses flags, sets up logging and signals, runs the server.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use state_server::{Args, Config, StateServer};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if args.log_json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let config = match Config::try_from(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("state-server: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match StateServer::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &args.ports_file {
        if let Err(e) = server.write_ports_file(path) {
            error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    server.run(shutdown).await;
    ExitCode::SUCCESS
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = int.recv() => info!("SIGINT: stopping"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    warn!("second signal: exiting now");
    std::process::exit(130);
}
