//! Ad-hoc grants from flags: `--dir HOST[::GUEST][:ro]`, `--env NAME[=VALUE]`,
//! `--timeout`, `--memory`. Without a manifest they are the whole grant;
//! with one they narrow it (and are refused if they would widen it).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use toolcell_runtime::{
    ByteSize, DirGrant, DirMode, DirNarrowing, EgressNarrowing, EgressRule, EnvGrant, EnvSource, LimitsNarrowing,
    Manifest, Narrowing, TimeSpan,
};

/// `--dir HOST[::GUEST][:ro]`: read-write unless `:ro`; GUEST defaults to HOST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirFlag {
    pub host: PathBuf,
    pub guest: String,
    pub mode: DirMode,
}

pub fn parse_dir(text: &str) -> Result<DirFlag, String> {
    let (spec, mode) = match text.strip_suffix(":ro") {
        Some(spec) => (spec, DirMode::ReadOnly),
        None => (text, DirMode::ReadWrite),
    };
    let (host, guest) = match spec.split_once("::") {
        Some((host, guest)) => (host, guest.to_owned()),
        None => (spec, String::new()),
    };
    if host.is_empty() {
        return Err(format!("`{text}` names no host directory; write HOST[::GUEST][:ro]"));
    }
    let guest = if guest.is_empty() {
        // The host path seen from the guest: absolute, as on the host.
        std::path::absolute(host).map_err(|e| e.to_string())?.to_string_lossy().into_owned()
    } else {
        guest
    };
    let guest = toolcell_runtime::Manifest::guest_path(&guest).map_err(|e| e.to_string())?;
    Ok(DirFlag { host: PathBuf::from(host), guest, mode })
}

/// `--env NAME` (from the host) or `--env NAME=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFlag {
    pub name: String,
    pub value: Option<String>,
}

pub fn parse_env(text: &str) -> Result<EnvFlag, String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (text, None),
    };
    Manifest::env_name(name).map_err(|e| e.to_string())?;
    Ok(EnvFlag { name: name.to_owned(), value })
}

/// `--allow-http [METHODS=]URL_PATTERN`: METHODS is a comma list, GET by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFlag {
    pub url: String,
    pub methods: Option<Vec<String>>,
}

pub fn parse_http(text: &str) -> Result<HttpFlag, String> {
    let (methods, url) = match text.split_once('=') {
        Some((methods, url)) if !methods.contains("://") => {
            (Some(methods.split(',').map(|m| m.trim().to_ascii_uppercase()).collect::<Vec<_>>()), url)
        }
        _ => (None, text),
    };
    // Validated here so a typo fails before anything runs.
    EgressRule::parse(url).map_err(|e| e.to_string())?;
    Ok(HttpFlag { url: url.to_owned(), methods })
}

/// The grant flags of one run.
#[derive(Debug, Default)]
pub struct GrantFlags {
    pub dirs: Vec<DirFlag>,
    pub env: Vec<EnvFlag>,
    pub http: Vec<HttpFlag>,
    pub timeout: Option<TimeSpan>,
    pub memory: Option<ByteSize>,
}

impl GrantFlags {
    /// Adds the flags to an ad-hoc manifest, which grants nothing else.
    pub fn apply_to_ad_hoc(&self, manifest: &mut Manifest) -> Result<()> {
        for dir in &self.dirs {
            let host = Manifest::host_dir(&dir.host).context("--dir")?;
            if manifest.filesystem.iter().any(|d| d.guest == dir.guest) {
                bail!("--dir: guest path `{}` is given twice", dir.guest);
            }
            manifest.filesystem.push(DirGrant { host, guest: dir.guest.clone(), mode: dir.mode });
        }
        for env in &self.env {
            let source = match &env.value {
                Some(value) => EnvSource::Value(value.clone()),
                None => EnvSource::Host,
            };
            manifest.env.push(EnvGrant { name: env.name.clone(), source });
        }
        for flag in &self.http {
            let mut rule = EgressRule::parse(&flag.url).context("--allow-http")?;
            if let Some(methods) = &flag.methods {
                rule.methods = methods.clone();
            }
            manifest.egress.push(rule);
        }
        if let Some(timeout) = self.timeout {
            manifest.limits.timeout = timeout;
            // An ad-hoc run's CPU budget follows its wall clock.
            manifest.limits.cpu = timeout;
        }
        if let Some(memory) = self.memory {
            manifest.limits.memory = memory;
        }
        Ok(())
    }

    /// Turns the flags into a narrowing of `manifest`. Flags that name
    /// something the manifest does not grant become a widening the runtime
    /// refuses, so the error comes from the one place that decides.
    pub fn narrowing(&self, manifest: &Manifest) -> Result<Narrowing> {
        let mut narrowing = Narrowing::default();
        if !self.dirs.is_empty() {
            let mut dirs = Vec::new();
            for dir in &self.dirs {
                if let Some(granted) = manifest.filesystem.iter().find(|d| d.guest == dir.guest) {
                    let host = canonical(&dir.host)?;
                    if host != granted.host {
                        bail!(
                            "--dir: `{}` is granted from `{}` by the manifest, not from `{}`",
                            dir.guest,
                            granted.host.display(),
                            dir.host.display()
                        );
                    }
                }
                dirs.push(DirNarrowing { guest: dir.guest.clone(), mode: dir.mode });
            }
            narrowing.filesystem = Some(dirs);
        }
        if !self.env.is_empty() {
            if let Some(env) = self.env.iter().find(|e| e.value.is_some()) {
                bail!(
                    "--env {}=...: a manifest's variables get their values from the manifest; name them without `=`",
                    env.name
                );
            }
            narrowing.env = Some(self.env.iter().map(|e| e.name.clone()).collect());
        }
        if !self.http.is_empty() {
            let kept = self.http.iter().map(|flag| EgressNarrowing {
                url: flag.url.clone(),
                methods: flag.methods.clone(),
                max_requests: None,
            });
            narrowing.egress = Some(kept.collect());
        }
        narrowing.limits = LimitsNarrowing { timeout: self.timeout, memory: self.memory, ..Default::default() };
        Ok(narrowing)
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    Manifest::host_dir(path).context("--dir")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_flags_parse() {
        let flag = parse_dir("/srv/data::/data:ro").unwrap();
        assert_eq!(flag, DirFlag { host: "/srv/data".into(), guest: "/data".into(), mode: DirMode::ReadOnly });
        let flag = parse_dir("/srv/data::/data").unwrap();
        assert_eq!(flag.mode, DirMode::ReadWrite);
        let flag = parse_dir("/srv/data:ro").unwrap();
        assert_eq!((flag.guest.as_str(), flag.mode), ("/srv/data", DirMode::ReadOnly));
        assert!(parse_dir("::/data").is_err());
        assert!(parse_dir("/srv::data").unwrap_err().contains("must be absolute"));
        assert!(parse_dir("/srv::/a/../b").is_err());
    }

    #[test]
    fn http_flags_parse() {
        let flag = parse_http("https://api.example.com/v1/*").unwrap();
        assert_eq!((flag.url.as_str(), flag.methods), ("https://api.example.com/v1/*", None));
        let flag = parse_http("get,POST=http://127.0.0.1:8080/*").unwrap();
        assert_eq!(flag.methods, Some(vec!["GET".to_owned(), "POST".to_owned()]));
        assert!(parse_http("ftp://x/").is_err());
        assert!(parse_http("https://x/?q=1").is_err());
    }

    #[test]
    fn env_flags_parse() {
        assert_eq!(parse_env("LANG").unwrap(), EnvFlag { name: "LANG".into(), value: None });
        assert_eq!(parse_env("A=b=c").unwrap(), EnvFlag { name: "A".into(), value: Some("b=c".into()) });
        assert!(parse_env("1BAD").is_err());
    }
}
