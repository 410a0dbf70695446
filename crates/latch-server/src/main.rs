//! `latch`: the identity broker's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use latch_server::config::Config;
use latch_server::{app, bootstrap, telemetry};

/// With `--features mimalloc`: mimalloc, for many short-lived allocations across worker and
/// blocking threads (glibc's malloc was ~8% of a sign-in's CPU), at the cost of idle memory
/// (54 against 28 MiB measured). The default build keeps glibc's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Latch: an identity broker. Apps sign in through Latch (OpenID Connect or SAML); Latch signs
/// users in through your identity providers, and ends every session everywhere on logout.
#[derive(Parser)]
#[command(
    name = "latch",
    version,
    about = "Latch, an identity broker: apps sign in through Latch, Latch signs users in through your\nidentity providers, and a logout ends the user's sessions everywhere.",
    propagate_version = true
)]
struct Cli {
    /// TOML configuration file; LATCH_* environment variables override its keys.
    #[arg(long, short, global = true, env = "LATCH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Recover access on the machine that holds the data dir (or the database settings).
    Admin {
        #[command(subcommand)]
        action: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a new password for the `admin` user (printed once; or LATCH_ADMIN_PASSWORD), unblock
    /// it and give it back the admin role.
    ResetPassword,
    /// Mint a new bootstrap management API token (printed once); the old one stops working when
    /// instances restart.
    NewToken,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List signing keys and their states.
    List,
    /// Rotate: the published next key starts signing, the current one stays published for 30
    /// days, a new next key is published. Running instances pick it up within a minute.
    Rotate,
}

fn main() -> ExitCode {
    // Every file Latch creates (databases, their WAL and shared-memory files, keys) is readable
    // by this user only, whatever the umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("latch: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("latch: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve => runtime.block_on(serve(config)),
        Command::Migrate => runtime.block_on(migrate(config)),
        Command::Keys { action } => runtime.block_on(keys(config, action)),
        Command::Admin { action } => runtime.block_on(admin(config, action)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("latch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = bootstrap::open_store(&config).await?;
    println!(
        "database ({}) is up to date",
        latch_core::store::Store::backend(&store)
    );
    Ok(())
}

async fn admin(config: Config, action: AdminCommand) -> anyhow::Result<()> {
    match action {
        AdminCommand::ResetPassword => {
            match bootstrap::reset_admin_password(&config, config.admin_password.as_deref()).await?
            {
                Some(p) => println!("new password for `admin` (shown once):\n{p}"),
                None => println!("the `admin` password is now LATCH_ADMIN_PASSWORD"),
            }
        }
        AdminCommand::NewToken => {
            let token = bootstrap::new_admin_token(&config)?;
            println!("new management API token (shown once; restart every instance):\n{token}");
        }
    }
    Ok(())
}

async fn keys(config: Config, action: KeysCommand) -> anyhow::Result<()> {
    use std::sync::Arc;
    // Listing or rotating keys needs a deployment; they never make one.
    bootstrap::require_deployment(&config)?;
    let store: Arc<dyn latch_core::store::Store> = Arc::new(bootstrap::open_store(&config).await?);
    let ring = latch_jose::KeyRing::load_or_init(store.clone(), Arc::new(latch_core::SystemClock))
        .await
        .map_err(|e| anyhow::anyhow!("signing keys: {e}"))?;
    if let KeysCommand::Rotate = action {
        ring.rotate(time::Duration::days(30))
            .await
            .map_err(|e| anyhow::anyhow!("rotation failed: {e}"))?;
        println!("rotated");
    }
    for k in store.list_signing_keys().await? {
        println!("{:<44} {:<6} {}", k.kid, k.alg.as_str(), k.state.as_str());
    }
    Ok(())
}

/// How much lower the background runtime's threads run than requests (Linux `nice`; CFS weight
/// 110 against 1,024): under load a request waiting for a core takes it from background work.
const BACKGROUND_NICE: i32 = 10;

/// The runtime of the background workers ([`app::spawn_workers`]): the back-channel fan-out
/// (an RS256 signature per logout token), log streams, the sweepers, key reloads. Its threads,
/// and the threads they start, run at [`BACKGROUND_NICE`], so a burst of logout fan-out does not
/// queue sign-ins, refreshes and GTR calls behind its signatures; on an idle core it runs at full
/// speed. Deliveries are durable in the outbox whatever their pace (and leased, so a delivery
/// whose lease ran out under load is claimed again, by any instance).
struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("latch-background")
            .on_thread_start(|| {
                // This thread only (Linux: a thread's own nice value); refused where lowering
                // is not permitted, which changes nothing else.
                if let Err(e) = rustix::process::setpriority_process(None, BACKGROUND_NICE) {
                    tracing::debug!(error = %e, "background thread priority unchanged");
                }
            })
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the background runtime: {e}"))?;
        Ok(Self(Some(runtime)))
    }

    fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.0.as_ref().map(tokio::runtime::Runtime::enter)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Dropped inside the main runtime: a plain drop would block there.
        if let Some(r) = self.0.take() {
            r.shutdown_background();
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(config = ?config, "starting");
    let bind = config.bind;
    // The port first: a start that cannot listen must fail before it creates anything (a first
    // start used to create the admin user and token, then fail to bind, and never print them).
    let listener = std::net::TcpListener::bind(bind)
        .map_err(|e| anyhow::anyhow!("LATCH_BIND {bind}: cannot listen: {e}"))?;
    let started = bootstrap::start(config).await?;
    let state = started.state.clone();

    let server = actix_web::HttpServer::new(move || app::app(state.clone()))
        .listen(listener)
        .map_err(|e| anyhow::anyhow!("LATCH_BIND {bind}: cannot listen: {e}"))?
        .shutdown_timeout(10)
        .run();

    // Background work runs on a runtime of its own, at a lower CPU priority than requests.
    let background = Background::start()?;
    let _workers = {
        let _on = background.enter();
        app::spawn_workers(&started.state)
    };

    let issuer = started.state.config.issuer_str().to_owned();
    // The banner is for the person who started Latch. With JSON logs, stdout carries only log
    // lines: the banner (which may hold the one-time password and token) goes to stderr.
    let json = started.state.config.log_format == latch_server::config::LogFormat::Json;
    macro_rules! banner {
        ($($t:tt)*) => {
            if json { eprintln!($($t)*) } else { println!($($t)*) }
        };
    }
    banner!();
    banner!("  Latch is running at {issuer}");
    banner!(
        "  database: {}   sessions: {}",
        latch_core::store::Store::backend(&*started.state.store),
        started.state.sessions.backend()
    );
    banner!("  Admin UI:           {issuer}/admin");
    match &started.new_admin_password {
        Some(p) => {
            banner!("    sign in as `admin` with this password (shown once; change it after):");
            banner!("    {p}");
        }
        None => banner!(
            "    sign in as `admin` (password: LATCH_ADMIN_PASSWORD, or the one printed on first start)"
        ),
    }
    banner!("  Management API:     {issuer}/api/v2   (Authorization: Bearer <token>)");
    match &started.new_admin_token {
        Some(token) => {
            banner!();
            banner!("  Bootstrap management API token (shown once, only its digest is stored):");
            banner!("    {token}");
            banner!("  Try: curl -H 'Authorization: Bearer {token}' {issuer}/api/v2/connections");
        }
        None => {
            banner!("  Token: LATCH_ADMIN_TOKEN, or the bootstrap token printed on first start")
        }
    }
    banner!();
    tracing::info!(%bind, %issuer, "listening");
    server.await?;
    tracing::info!("stopped");
    Ok(())
}
