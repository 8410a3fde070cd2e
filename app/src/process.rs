//! The shell every long-running binary shares: settings, a runtime, one-line errors.

use std::future::Future;
use std::process::ExitCode;

use keel_core::auth::TokenKeys;
use keel_core::feature::Features;
use keel_core::settings::{Settings, SettingsError};

use crate::features::All;

pub type BoxError = Box<dyn std::error::Error>;

/// Settings as every keel process loads them, before doing anything else: the
/// environment, keel-core's sections and every feature's (every problem reported at
/// once), then the JWT key pair it names, which auth builds and checks (settings are
/// plain data), reported the same way.
pub fn load_settings() -> Result<Settings, SettingsError> {
    let settings = Settings::load_with(All::read_settings)?;
    TokenKeys::from_settings(&settings.security)?;
    Ok(settings)
}

/// Loads settings (every problem printed, exit 1), starts the multi-thread runtime and
/// runs `main` on it; an error it returns is printed as one line `name: error`, exit 1.
pub fn run<F, Fut>(name: &str, main: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let settings = match load_settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{name}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err}");
            ExitCode::FAILURE
        }
    }
}
