//! `tripline`: the daemon (`serve`) and its command-line client (`query`).

use tripline::{cli, config, daemon};

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// jemalloc: ingest allocates many small, short-lived maps and strings per
/// event and large request buffers; glibc malloc cost ~12% of the daemon's
/// CPU, and mimalloc's prompt return of freed pages to the OS cost as much
/// in page faults (BENCHMARKS.md has the comparison).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "tripline", version, about = "Centralized security log pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (HTTP ingest and search API).
    Serve {
        /// Configuration file (TOML); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (WAL, index, tokens).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// HTTP API address; port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Syslog address (TCP and UDP), or `off`; port 0 picks a free port.
        #[arg(long)]
        syslog_listen: Option<config::Listen>,
        /// Directory of Sigma rules evaluated on every event (`detect.rules_dir`).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Search a running daemon and print the hits.
    Query(cli::QueryArgs),
    /// List the alerts of a running daemon.
    Alerts(cli::AlertsArgs),
    /// Sigma rules: check a directory of them.
    #[command(subcommand)]
    Rules(cli::RulesCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            syslog_listen,
            rules,
        } => {
            // First: every file the daemon creates is private to its user.
            daemon::private_umask();
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("TRIPLINE_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let mut cfg = match &config {
                Some(path) => config::Config::load(path)?,
                None => config::Config::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(l) = syslog_listen {
                cfg.syslog.listen = l;
            }
            if let Some(r) = rules {
                cfg.detect.rules_dir = Some(r);
            }
            cfg.validate()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("tripline-rt")
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async move {
                let http = tokio::net::TcpListener::bind(cfg.listen)
                    .await
                    .with_context(|| format!("binding {}", cfg.listen))?;
                let syslog = match cfg.syslog.listen {
                    config::Listen::Off => None,
                    config::Listen::On(addr) => Some(
                        ingest::listener::bind(addr)
                            .await
                            .with_context(|| format!("binding syslog {addr} (tcp and udp)"))?,
                    ),
                };
                let shutdown = CancellationToken::new();
                tokio::spawn(signal_shutdown(shutdown.clone()));
                daemon::run(cfg, daemon::Listeners { http, syslog }, shutdown).await
            })
        }
        Command::Query(args) => cli::query(args),
        Command::Alerts(args) => cli::alerts(args),
        Command::Rules(cmd) => cli::rules(cmd),
    }
}

/// Cancels `token` on SIGTERM or ctrl-c.
async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
    token.cancel();
}
