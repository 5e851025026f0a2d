use std::process::ExitCode;

use upload_broker::config::Config;
use upload_broker::{Application, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&config.log_level, config.is_production());

    let (trigger, stop) = shutdown::channel();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        trigger.trigger();
    });

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
