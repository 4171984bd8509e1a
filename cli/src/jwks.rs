//! `toolcell jwks`: the built-in issuer's public keys, for services that
//! verify the tokens tools carry; and key rotation.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use toolcell_runtime::credentials::issuer::Issuer;

use crate::run::runtime_config;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
The keys live in the file the runtime config names ([issuer] keys), by default
$XDG_STATE_HOME/toolcell/issuer-keys.json (mode 0600); it is created on first use.
Rotate regularly: `--rotate` adds a key that signs from then on while older keys
keep verifying; `--retire-old` drops them once their tokens have expired (tokens
live at most as long as one call).")]
pub struct JwksArgs {
    /// Add a new signing key first; older keys keep verifying.
    #[arg(long)]
    rotate: bool,
    /// Drop every key but the newest first; tokens they signed stop verifying.
    #[arg(long, conflicts_with = "rotate")]
    retire_old: bool,
}

pub fn run(args: JwksArgs, config: Option<&Path>) -> Result<ExitCode> {
    let config = runtime_config(config, None)?;
    let Some(keys) = &config.credentials.issuer.keys else {
        bail!("no issuer key file: set [issuer] keys in the runtime config, or HOME / XDG_STATE_HOME");
    };
    let url = config.credentials.issuer.url.clone().unwrap_or_else(|| format!("https://{}", config.trust_domain));
    let issuer = Issuer::open(url, keys)?;
    if args.rotate {
        let kid = issuer.rotate()?;
        eprintln!("toolcell: added signing key {kid} to {}", keys.display());
    }
    if args.retire_old {
        issuer.retire_old_keys()?;
        eprintln!("toolcell: kept only the newest signing key in {}", keys.display());
    }
    outln!("{}", serde_json::to_string_pretty(&issuer.jwks()).context("JWKS")?);
    Ok(ExitCode::SUCCESS)
}
