//! `toolcell policy check`: validates manifests and prints what each grants.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use toolcell_runtime::{Manifest, component_digest, limits_table};

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate manifests and print what each grants. Exits 1 if any is invalid.
    Check {
        /// Manifest files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

pub fn run(command: PolicyCommand) -> Result<ExitCode> {
    let PolicyCommand::Check { files } = command;
    let mut invalid = 0;
    for file in &files {
        match Manifest::load(file).map_err(|e| e.to_string()).and_then(|m| check_component(&m).map(|c| (m, c))) {
            Ok((manifest, component)) => print_grants(file, &manifest, &component),
            Err(error) => {
                invalid += 1;
                outln!("{}: INVALID\n  {error}", file.display());
            }
        }
    }
    outln!("{} checked, {} valid, {invalid} invalid", files.len(), files.len() - invalid);
    Ok(if invalid == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The component must exist and match its pin for the manifest to be usable.
fn check_component(manifest: &Manifest) -> Result<String, String> {
    let path = &manifest.component;
    let digest = component_digest(path, manifest.sha256.as_ref()).map_err(|e| format!("tool.component: {e}"))?;
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(match manifest.sha256 {
        Some(_) => format!("{} (sha256 pinned, matches)", path.display()),
        None => format!("{} (sha256 {hex}, not pinned)", path.display()),
    })
}

fn print_grants(file: &std::path::Path, manifest: &Manifest, component: &str) {
    let today = time::OffsetDateTime::now_utc().date();
    outln!("{}: ok", file.display());
    outln!("  tool        {} — {}", manifest.name, manifest.purpose);
    let review = match manifest.review_by {
        Some(date) if date < today => format!("{date} (OVERDUE)"),
        Some(date) => date.to_string(),
        None => "none".into(),
    };
    outln!("  owner       {} (review by {review})", manifest.owner);
    outln!("  component   {component}");
    if manifest.filesystem.is_empty() {
        outln!("  filesystem  nothing");
    }
    for dir in &manifest.filesystem {
        outln!("  filesystem  {} -> {} ({})", dir.host.display(), dir.guest, dir.mode);
    }
    let env: Vec<&str> = manifest.env.iter().map(|e| e.name.as_str()).collect();
    outln!("  env         {}", if env.is_empty() { "nothing".into() } else { env.join(", ") });
    outln!("  scratch     {}", manifest.scratch.as_deref().unwrap_or("none"));
    if manifest.egress.is_empty() {
        outln!("  egress      nothing");
    }
    for rule in &manifest.egress {
        let mut caps = format!(
            "{} requests, bodies {} up / {} down",
            rule.max_requests, rule.max_request_body, rule.max_response_body
        );
        if !rule.addresses.is_empty() {
            let addresses: Vec<String> = rule.addresses.iter().map(|a| a.to_string()).collect();
            caps.push_str(&format!(", may reach {}", addresses.join(", ")));
        }
        outln!("  egress      {} {} ({caps})", rule.methods.join(","), rule.url);
    }
    if manifest.sockets.is_empty() {
        outln!("  sockets     nothing (raw TCP, UDP and name lookup refused)");
    }
    for socket in &manifest.sockets {
        outln!("  sockets     {:?} {}", socket.protocol, socket.address);
    }
    if manifest.credentials.is_empty() {
        outln!("  credentials nothing");
    }
    for credential in &manifest.credentials {
        outln!("  credentials {credential}");
    }
    let limits: Vec<String> = limits_table(&manifest.limits).into_iter().map(|(k, v)| format!("{k} {v}")).collect();
    outln!("  limits      {}", limits.join(", "));
}
