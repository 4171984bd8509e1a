//! Validation of a manifest's raw shape into a [`Manifest`], one function
//! per section; every error is located (file, line, column, field).

use std::collections::BTreeSet;
use std::path::Path;

use super::error::{Locator, ManifestError};
use super::raw::{
    CredentialEntry, DirEntry, EgressEntry, EnvSection, LimitsSection, ManifestFile, OneOrMany, RateLimitsSection,
    ScratchSection, SocketEntry,
};
use super::{HTTP_METHODS, env_name, guest_path, host_dir, parse_review_date, parse_sha256, validate_tool_name};
use crate::manifest::Manifest;
use crate::policy::ManifestApproval;
use crate::policy::credential::{CredentialSpec, Exposure, Injection, ProviderKind, check_injection_header};
use crate::policy::dir::DirGrant;
use crate::policy::egress::{EgressRule, NEVER_WITH_CREDENTIALS};
use crate::policy::env::{EnvGrant, EnvSource};
use crate::policy::limits::{Limits, validate_limits};
use crate::policy::rate::{PerMinute, ToolRateLimits};
use crate::policy::socket::SocketGrant;
use crate::units::TimeSpan;
use toml::Spanned;

impl ManifestFile {
    pub(super) fn validate(self, base: &Path, at: &Locator<'_>) -> Result<Manifest, ManifestError> {
        let tool = self.tool;
        validate_tool_name(tool.name.get_ref()).map_err(|m| at.at(&tool.name, "tool.name", m))?;
        for (value, field) in [(&tool.owner, "tool.owner"), (&tool.purpose, "tool.purpose")] {
            if value.get_ref().trim().is_empty() {
                return Err(at.at(value, field, "must not be empty"));
            }
        }
        let review_by =
            parse_review_date(tool.review_by.get_ref()).map_err(|m| at.at(&tool.review_by, "tool.review_by", m))?;
        let sha256 = match &tool.sha256 {
            Some(pin) => Some(parse_sha256(pin.get_ref()).map_err(|m| at.at(pin, "tool.sha256", m))?),
            None => None,
        };

        let mut guests = BTreeSet::new();
        let filesystem = filesystem(&self.filesystem, base, at, &mut guests)?;
        let scratch = scratch(self.scratch.as_ref(), at, &mut guests)?;
        let env = env(&self.env, at)?;
        let egress = egress(&self.egress, at)?;
        let sockets = sockets(&self.sockets, at)?;
        let credentials = credentials(&self.credentials, &egress, at)?;
        let limits = limits(self.limits, at)?;
        let rate_limits = rate_limits(self.rate_limits, at)?;

        Ok(Manifest {
            name: tool.name.into_inner(),
            owner: tool.owner.into_inner(),
            purpose: tool.purpose.into_inner(),
            review_by: Some(review_by),
            component: base.join(tool.component.into_inner()),
            sha256,
            filesystem,
            env,
            scratch,
            egress,
            sockets,
            credentials,
            limits,
            rate_limits,
            tags: tool.tags,
            source: Some(at.file.to_owned()),
        })
    }
}

/// `[[filesystem]]`: each host directory exists (canonicalised), each guest
/// path is absolute, plain and granted once.
pub(super) fn filesystem(
    entries: &[DirEntry],
    base: &Path,
    at: &Locator<'_>,
    guests: &mut BTreeSet<String>,
) -> Result<Vec<DirGrant>, ManifestError> {
    let mut filesystem = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let field = |name: &str| format!("filesystem[{index}].{name}");
        let host = host_dir(&base.join(entry.host.get_ref())).map_err(|m| at.at(&entry.host, field("host"), m))?;
        let guest = guest_path(entry.guest.get_ref()).map_err(|m| at.at(&entry.guest, field("guest"), m))?;
        if !guests.insert(guest.clone()) {
            return Err(at.at(&entry.guest, field("guest"), format!("`{guest}` is granted twice")));
        }
        filesystem.push(DirGrant { host, guest, mode: entry.mode });
    }
    Ok(filesystem)
}

/// `[scratch]`: a guest path no directory grant uses.
pub(super) fn scratch(
    section: Option<&ScratchSection>,
    at: &Locator<'_>,
    guests: &mut BTreeSet<String>,
) -> Result<Option<String>, ManifestError> {
    Ok(match section {
        Some(section) => {
            let guest = guest_path(section.guest.get_ref()).map_err(|m| at.at(&section.guest, "scratch.guest", m))?;
            if !guests.insert(guest.clone()) {
                return Err(at.at(&section.guest, "scratch.guest", format!("`{guest}` is also a filesystem grant")));
            }
            Some(guest)
        }
        None => None,
    })
}

/// `[env]`: variables passed from the host and set in the manifest, each once.
pub(super) fn env(section: &EnvSection, at: &Locator<'_>) -> Result<Vec<EnvGrant>, ManifestError> {
    let mut env = Vec::new();
    let mut names = BTreeSet::new();
    for (index, name) in section.pass.iter().enumerate() {
        let field = format!("env.pass[{index}]");
        env_name(name.get_ref()).map_err(|m| at.at(name, &field, m))?;
        if !names.insert(name.get_ref().clone()) {
            return Err(at.at(name, field, format!("`{}` is granted twice", name.get_ref())));
        }
        env.push(EnvGrant { name: name.get_ref().clone(), source: EnvSource::Host });
    }
    for (name, value) in &section.set {
        let field = format!("env.set.{name}");
        env_name(name).map_err(|m| at.at(value, &field, m))?;
        if !names.insert(name.clone()) {
            return Err(at.at(value, field, format!("`{name}` is also in env.pass")));
        }
        env.push(EnvGrant { name: name.clone(), source: EnvSource::Value(value.get_ref().clone()) });
    }
    Ok(env)
}

/// `[[egress]]`: each rule's URL pattern, methods, addresses and caps; no pattern twice.
pub(super) fn egress(entries: &[EgressEntry], at: &Locator<'_>) -> Result<Vec<EgressRule>, ManifestError> {
    let mut egress = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let field = |name: &str| format!("egress[{index}].{name}");
        let mut rule = EgressRule::parse(entry.url.get_ref()).map_err(|e| at.at(&entry.url, field("url"), e))?;
        if let Some(methods) = &entry.methods {
            rule.methods.clear();
            for method in methods {
                let name = method.get_ref().to_ascii_uppercase();
                if !HTTP_METHODS.contains(&name.as_str()) {
                    return Err(at.at(
                        method,
                        field("methods"),
                        format!("`{}` is not an HTTP method", method.get_ref()),
                    ));
                }
                rule.methods.push(name);
            }
        }
        for address in &entry.addresses {
            let ip = address.get_ref().parse().map_err(|_| {
                at.at(address, field("addresses"), format!("`{}` is not an IP address", address.get_ref()))
            })?;
            rule.addresses.push(ip);
        }
        rule.max_requests = entry.max_requests.unwrap_or(rule.max_requests);
        rule.max_request_body = entry.max_request_body.unwrap_or(rule.max_request_body);
        rule.max_response_body = entry.max_response_body.unwrap_or(rule.max_response_body);
        rule.connect_timeout = entry.connect_timeout.unwrap_or(rule.connect_timeout);
        rule.first_byte_timeout = entry.first_byte_timeout.unwrap_or(rule.first_byte_timeout);
        rule.total_timeout = entry.total_timeout.unwrap_or(rule.total_timeout);
        if let Some(approval) = &entry.approval {
            if approval.scopes.is_some() {
                return Err(at.at(
                    &approval.reason,
                    field("approval"),
                    "an egress rule's approval names `methods`, not `scopes`",
                ));
            }
            let covers: Vec<String> = approval.methods.iter().flatten().map(|m| m.to_ascii_uppercase()).collect();
            if let Some(method) = covers.iter().find(|m| !rule.methods.contains(m)) {
                return Err(at.at(
                    &approval.reason,
                    field("approval.methods"),
                    format!("`{method}` is not one of the rule's methods"),
                ));
            }
            rule.approval = Some(ManifestApproval {
                reason: checked_reason(&approval.reason, at, field("approval.reason"))?,
                covers,
            });
        }
        if egress.iter().any(|r: &EgressRule| r.url == rule.url) {
            return Err(at.at(&entry.url, field("url"), format!("`{}` is written twice", rule.url)));
        }
        egress.push(rule);
    }
    Ok(egress)
}

/// `[[sockets]]`: exact addresses and ports.
pub(super) fn sockets(entries: &[SocketEntry], at: &Locator<'_>) -> Result<Vec<SocketGrant>, ManifestError> {
    let mut sockets = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let address = entry.address.get_ref().parse().map_err(|_| {
            at.at(
                &entry.address,
                format!("sockets[{index}].address"),
                format!("`{}` is not an exact address and port, like 127.0.0.1:5432", entry.address.get_ref()),
            )
        })?;
        sockets.push(SocketGrant { protocol: entry.protocol, address });
    }
    Ok(sockets)
}

/// `[[credentials]]`: names, providers, scopes, exposure, and injections
/// bound to this manifest's own egress rules.
pub(super) fn credentials(
    entries: &[CredentialEntry],
    egress: &[EgressRule],
    at: &Locator<'_>,
) -> Result<Vec<CredentialSpec>, ManifestError> {
    let mut credentials: Vec<CredentialSpec> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let field = |name: &str| format!("credentials[{index}].{name}");
        let name = entry.name.get_ref();
        validate_tool_name(name)
            .map_err(|m| at.at(&entry.name, field("name"), m.to_string().replace("tool name", "credential name")))?;
        if credentials.iter().any(|c| &c.name == name) {
            return Err(at.at(&entry.name, field("name"), format!("`{name}` is written twice")));
        }
        let provider = *entry.provider.get_ref();
        let exposure = match (entry.exposure.as_ref().map(|e| e.get_ref().as_str()), &entry.inject) {
            (None | Some("inject"), Some(inject)) => {
                let header = check_injection_header(inject.header.get_ref(), &inject.format)
                    .map_err(|m| at.at(&inject.header, field("inject"), m))?;
                let rules = match inject.egress.get_ref() {
                    OneOrMany::One(url) => vec![url.clone()],
                    OneOrMany::Many(urls) => urls.clone(),
                };
                if rules.is_empty() {
                    return Err(at.at(&inject.egress, field("inject.egress"), "names no egress rule"));
                }
                if let Some(unknown) = rules.iter().find(|url| !egress.iter().any(|rule| &rule.url == *url)) {
                    return Err(at.at(
                        &inject.egress,
                        field("inject.egress"),
                        format!("`{unknown}` is not one of this manifest's egress rules"),
                    ));
                }
                for url in &rules {
                    let rule = egress.iter().find(|rule| &rule.url == url).expect("checked above");
                    if let Some(method) = rule.methods.iter().find(|m| NEVER_WITH_CREDENTIALS.contains(&m.as_str())) {
                        return Err(at.at(
                            &inject.egress,
                            field("inject.egress"),
                            format!(
                                "rule `{url}` allows {method}, which is never sent with a credential \
                                 (TRACE echoes the injected header back to the tool; CONNECT tunnels past the host)"
                            ),
                        ));
                    }
                }
                Exposure::Inject(Injection { egress: rules, header, format: inject.format.clone() })
            }
            (None | Some("inject"), None) => {
                return Err(at.at(
                    &entry.name,
                    field("inject"),
                    "an injected credential needs `inject = { egress = \"<rule url>\" }`",
                ));
            }
            (Some("reveal"), None) if provider == ProviderKind::Static => {
                return Err(at.at(
                    &entry.provider,
                    field("exposure"),
                    "static credentials are root secrets: they can only be injected",
                ));
            }
            (Some("reveal"), None) => Exposure::Reveal,
            (Some("reveal"), Some(_)) => {
                return Err(at.at(
                    &entry.name,
                    field("inject"),
                    "a revealed credential is not injected; drop `inject`",
                ));
            }
            (Some(other), _) => {
                let spanned = entry.exposure.as_ref().expect("matched Some");
                return Err(at.at(spanned, field("exposure"), format!("`{other}` is not `inject` or `reveal`")));
            }
        };
        if provider == ProviderKind::Static && !entry.scopes.is_empty() {
            return Err(at.at(
                &entry.provider,
                field("scopes"),
                "a static secret carries no scopes toolcell could narrow; drop `scopes`",
            ));
        }
        if provider == ProviderKind::Openbao && entry.scopes.is_empty() {
            return Err(at.at(
                &entry.provider,
                field("scopes"),
                "an openbao credential names the OpenBao policies its task token carries in `scopes`; \
                 with none, OpenBao would give the token the runtime's own policies",
            ));
        }
        let max_ttl = entry.max_ttl.unwrap_or(TimeSpan(std::time::Duration::from_secs(300)));
        if max_ttl.0.as_secs() == 0 {
            return Err(at.at(&entry.name, field("max_ttl"), "must be at least 1s"));
        }
        let approval = match &entry.approval {
            None => None,
            Some(approval) => {
                if approval.methods.is_some() {
                    return Err(at.at(
                        &approval.reason,
                        field("approval"),
                        "a credential's approval names `scopes`, not `methods`",
                    ));
                }
                let covers = approval.scopes.clone().unwrap_or_default();
                if let Some(scope) = covers.iter().find(|s| !entry.scopes.contains(s)) {
                    return Err(at.at(
                        &approval.reason,
                        field("approval.scopes"),
                        format!("`{scope}` is not one of the credential's scopes"),
                    ));
                }
                Some(ManifestApproval {
                    reason: checked_reason(&approval.reason, at, field("approval.reason"))?,
                    covers,
                })
            }
        };
        credentials.push(CredentialSpec {
            name: name.clone(),
            provider,
            scopes: entry.scopes.clone(),
            audience: entry.audience.clone(),
            max_ttl,
            exposure,
            approval,
        });
    }
    Ok(credentials)
}

/// An approval's reason: said, and short enough to show.
fn checked_reason(reason: &Spanned<String>, at: &Locator<'_>, field: String) -> Result<String, ManifestError> {
    let text = reason.get_ref().trim();
    if text.is_empty() || text.len() > 512 {
        return Err(at.at(reason, field, "says why a person must approve, in 1 to 512 bytes"));
    }
    Ok(text.to_owned())
}

/// `[limits]`: each given limit, the defaults for the rest, and the floors.
/// `[rate_limits]`: a limit of 0 would refuse every call (a kill says that
/// better); the operator's limits still apply, so a manifest can only lower.
pub(super) fn rate_limits(raw: RateLimitsSection, at: &Locator<'_>) -> Result<ToolRateLimits, ManifestError> {
    let tool = PerMinute {
        calls_per_minute: raw.calls_per_minute,
        requests_per_minute: raw.requests_per_minute,
        bytes_out_per_minute: raw.bytes_out_per_minute,
        mints_per_minute: raw.mints_per_minute,
    };
    for (section, limits) in [("rate_limits", &tool), ("rate_limits.per_principal", &raw.per_principal)] {
        if let Some(name) = limits.zero() {
            return Err(at.error(
                None,
                format!("{section}.{name}"),
                "must be above 0 (to stop a tool, use `toolcell kill`)",
            ));
        }
    }
    Ok(ToolRateLimits { tool, per_principal: raw.per_principal })
}

pub(super) fn limits(raw: LimitsSection, at: &Locator<'_>) -> Result<Limits, ManifestError> {
    let defaults = Limits::DEFAULT;
    let limits = Limits {
        memory: raw.memory.unwrap_or(defaults.memory),
        cpu: raw.cpu.unwrap_or(defaults.cpu),
        timeout: raw.timeout.unwrap_or(defaults.timeout),
        max_input: raw.max_input.unwrap_or(defaults.max_input),
        max_output: raw.max_output.unwrap_or(defaults.max_output),
        max_refusals: raw.max_refusals.unwrap_or(defaults.max_refusals),
        max_credentials: raw.max_credentials.unwrap_or(defaults.max_credentials),
    };
    validate_limits(&limits).map_err(|(field, m)| at.error(None, format!("limits.{field}"), m))?;
    Ok(limits)
}
