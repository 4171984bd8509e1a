//! `toolcell new NAME`: scaffolds a tool crate that builds and runs as
//! generated — a typed handler, a manifest that grants nothing, a README.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Creates NAME/ with Cargo.toml (a cdylib for wasm32-wasip2), src/lib.rs (a typed
handler), NAME.toml (a manifest that grants nothing) and a README. Then:
  cd NAME && cargo build --release
  toolcell run --manifest NAME.toml --input '{\"name\":\"world\"}'")]
pub struct NewArgs {
    /// The tool's name: lowercase letters, digits and single dashes, starting with a letter.
    name: String,
    /// Where to create it (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The toolcell-sdk crate to depend on (default: the one in the toolcell
    /// checkout this binary was built from).
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

const CARGO_TOML: &str = include_str!("../templates/new/Cargo.toml.tmpl");
const CARGO_CONFIG: &str = include_str!("../templates/new/cargo-config.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/new/lib.rs.tmpl");
const MANIFEST: &str = include_str!("../templates/new/manifest.toml.tmpl");
const README: &str = include_str!("../templates/new/README.md.tmpl");

/// The SDK next to this binary's source, when it was built from a checkout.
fn default_sdk() -> Option<PathBuf> {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk")).canonicalize().ok()
}

pub fn run(args: NewArgs) -> Result<ExitCode> {
    let name = args.name.as_str();
    toolcell_runtime::validate_tool_name(name)?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!("`{name}` must start with a letter (it is also the crate's name)");
    }
    let sdk = match args.sdk.or_else(default_sdk) {
        Some(sdk) => sdk.canonicalize().with_context(|| format!("the SDK at `{}`", sdk.display()))?,
        None => bail!("cannot find toolcell-sdk; pass --sdk PATH (the `sdk` directory of a toolcell checkout)"),
    };
    if !sdk.join("Cargo.toml").is_file() {
        bail!("`{}` is not the toolcell-sdk crate (no Cargo.toml there)", sdk.display());
    }
    let root = args.dir.join(name);
    if root.exists() {
        bail!("`{}` already exists; pick another name or --dir", root.display());
    }
    let review_by = time::OffsetDateTime::now_utc().date().replace_year(time::OffsetDateTime::now_utc().year() + 1);
    let review_by = review_by.unwrap_or_else(|_| time::OffsetDateTime::now_utc().date());
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{artifact}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{review_by}}", &review_by.to_string())
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        (".cargo/config.toml", fill(CARGO_CONFIG)),
        ("src/lib.rs", fill(LIB_RS)),
        (&format!("{name}.toml") as &str, fill(MANIFEST)),
        ("README.md", fill(README)),
        (".gitignore", "target/\n".to_owned()),
    ];
    for (path, text) in &files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("files are inside the crate"))
            .with_context(|| format!("creating `{}`", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
    }
    outln!("created {}/ (a toolcell tool; its manifest grants nothing)", root.display());
    outln!("  cd {} && cargo build --release", root.display());
    outln!("  toolcell run --manifest {name}.toml --input '{{\"name\":\"world\"}}'");
    Ok(ExitCode::SUCCESS)
}
