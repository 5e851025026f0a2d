//! upload-broker's command line: `upload-broker` (or `upload-broker serve`) serves,
//! `upload-broker upload FILE...` uploads files through a running service, and
//! `upload-broker healthcheck` asks a running service whether it is healthy. Every level
//! answers `--help` and `--version`; anything else is a usage error (exit status 2).

mod healthcheck;
mod upload;

use clap::{Parser, Subcommand};

pub use healthcheck::healthcheck;
pub use upload::{UploadArgs, upload};

/// Presigned S3 uploads with a durable record and server-side verification.
///
/// With no command, serves the API; the environment configures it (PORT, DATA_DIR,
/// DATABASE_URL, AWS_BUCKET_NAME, ...: see the README).
#[derive(Debug, Parser)]
#[command(name = "upload-broker", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// What the binary was asked to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the same as no command).
    #[command(display_name = "upload-broker serve")]
    Serve,
    /// Upload files through a running upload-broker.
    #[command(display_name = "upload-broker upload")]
    Upload(UploadArgs),
    /// Ask the service running on PORT (5000 when unset) whether it is healthy.
    #[command(display_name = "upload-broker healthcheck")]
    Healthcheck,
}

/// The command the process's arguments ask for. `--help`, `--version` and usage errors
/// are answered here, and the process exits: 0 for the first two, 2 for an error.
pub fn command() -> Command {
    Cli::parse().command.unwrap_or(Command::Serve)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_command_serves_and_unknown_ones_are_errors() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.command);
        assert!(matches!(parse(&["upload-broker"]), Ok(None)));
        assert!(matches!(
            parse(&["upload-broker", "serve"]),
            Ok(Some(Command::Serve))
        ));
        assert!(matches!(
            parse(&["upload-broker", "healthcheck"]),
            Ok(Some(Command::Healthcheck))
        ));
        for bad in [
            &["upload-broker", "--bogus"][..],
            &["upload-broker", "frobnicate"],
        ] {
            let err = parse(bad).expect_err("a usage error");
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
