//! `frontend`: parses flags, sets up logging and signals, runs the node.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use frontend::acl::{AccessControl, AllowAll, AuthRequiredPrefixes};
use frontend::chat::{Chat, ChatConfig, ADMIN_PASSWORD_ENV};
use frontend::{demo, App, Args, Config, Frontend};
use protocol::Codec;
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
            eprintln!("frontend: {e}");
            return ExitCode::from(2);
        }
    };
    let chat_config = match ChatConfig::from_args(&args, std::env::var(ADMIN_PASSWORD_ENV).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frontend: {e}");
            return ExitCode::from(2);
        }
    };
    // Each socket is a file descriptor: use all the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open-files limit"),
        Err(e) => warn!(error = %e, "could not raise the open-files limit"),
    }

    let acl: Arc<dyn AccessControl> = if config.auth_required_prefixes.is_empty() {
        Arc::new(AllowAll)
    } else {
        Arc::new(AuthRequiredPrefixes::new(config.auth_required_prefixes.clone()))
    };
    let mut chat = None;
    let mut app = App { acl, ..App::default() };
    if let Some(cc) = &chat_config {
        match Chat::start(cc).await {
            Ok(c) => {
                info!(store = %redact(&cc.store), "chat on");
                app = c.app(app.acl);
                chat = Some(c);
            }
            Err(e) => {
                error!(error = %e, store = %redact(&cc.store), "cannot start the chat");
                return ExitCode::from(1);
            }
        }
    } else if args.demo_rpc {
        warn!("--demo-rpc: `login` gives a token to anyone; for trials and tests only");
        app.handlers = demo::handlers();
    }

    let node = match Frontend::bind(config, app).await {
        Ok(n) => n,
        Err(e) => {
            error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    if let Some(chat) = &chat {
        chat.attach(&node.node()).await;
    }
    if let Some(path) = &args.ports_file {
        if let Err(e) = write_ports_file(path, &node) {
            error!(error = %e, path = %path.display(), "cannot write the ports file");
            return ExitCode::from(1);
        }
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    node.run(shutdown).await;
    info!("stopped");
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
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = int.recv() => info!("SIGINT: draining"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    warn!("second signal: exiting now");
    std::process::exit(130);
}

/// A store URL without its password (`mongodb://user:secret@host` → `mongodb://user:***@host`).
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.find('@')) {
        (Some((scheme, rest)), Some(_)) => match rest.split_once('@') {
            Some((creds, host)) => {
                let user = creds.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// Writes `{"json":"host:port","min_bin":"host:port"}` atomically (temp file, then rename).
fn write_ports_file(path: &std::path::Path, node: &Frontend) -> std::io::Result<()> {
    let mut ports = serde_json::Map::new();
    for (codec, addr) in node.local_addrs() {
        let key = match codec {
            Codec::Json => "json",
            Codec::MinBin => "min_bin",
        };
        ports.entry(key).or_insert_with(|| addr.to_string().into());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::Value::Object(ports).to_string())?;
    std::fs::rename(&tmp, path)
}
