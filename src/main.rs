use std::process::ExitCode;

use upload_broker::config::Config;
use upload_broker::{Application, shutdown, telemetry};
use upload_broker_cli::Command;

fn main() -> ExitCode {
    match upload_broker_cli::command() {
        Command::Serve => {}
        Command::Upload(args) => return upload_broker_cli::upload(args),
        Command::Healthcheck => return upload_broker_cli::healthcheck(),
    }
    tune_allocator();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A confirm polls the S3 SDK's deep futures under the middleware's: a debug build
        // needs more than the default 2 MiB for it (pages are only touched when used).
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(runtime) => runtime.block_on(serve()),
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&config.server.log_level, config.is_production());

    let (trigger, stop) = shutdown::channel();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        trigger.trigger();
    });
    tokio::spawn(return_free_memory());

    let app = match Application::build(config, stop).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "start-up failed");
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    match app.run().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Megabyte-sized buffers come and go (a large JPEG's prefix read to find its dimensions,
/// object reads for checks). glibc raises its mmap threshold after the first such buffer is
/// freed and then keeps the next ones in heap memory it rarely returns; a fixed threshold
/// keeps them mapped and returned on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it runs first in main, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// How often memory freed since is handed back to the OS.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// glibc keeps freed memory in its per-thread arenas, so after a burst of requests the
/// process stays as large as the burst made it. `malloc_trim` returns the free pages of
/// every arena; run every few seconds it costs well under a millisecond each time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn return_free_memory() {
    let mut ticker = tokio::time::interval(TRIM_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // SAFETY: malloc_trim only releases free memory; it is safe from any thread.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
async fn return_free_memory() {}
