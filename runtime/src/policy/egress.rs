//! Egress rules: which requests a grant lets a tool send, and which
//! addresses it may reach. Pure decisions, no sockets: the HTTP hook in
//! `caps::http` asks these functions and acts on the answer.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::units::{ByteSize, TimeSpan};

/// One rule: a URL pattern (`https://api.example.com/v1/*`, `http://127.0.0.1:8080/*`,
/// `https://*.example.com/*`), the methods it allows, and its caps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    /// The pattern as written, which names the rule in errors and audit events.
    pub url: String,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Exact host (lowercase), or `*.suffix` for any subdomain of suffix.
    pub host: HostPattern,
    /// The port; the scheme's default when the pattern names none.
    pub port: u16,
    /// Path pattern; `*` matches any run of characters.
    pub path: String,
    /// Allowed methods, uppercase.
    pub methods: Vec<String>,
    /// Addresses that would otherwise be refused (loopback, private,
    /// link-local, metadata) which this rule may reach. An IP-literal host
    /// names its own address.
    pub addresses: Vec<IpAddr>,
    /// Requests allowed per invocation through this rule.
    pub max_requests: u32,
    /// Request body cap.
    pub max_request_body: ByteSize,
    /// Response body cap.
    pub max_response_body: ByteSize,
    /// Connect timeout (TCP and TLS).
    pub connect_timeout: TimeSpan,
    /// Time from sending to the response's first byte.
    pub first_byte_timeout: TimeSpan,
    /// Time of the whole exchange, body included.
    pub total_timeout: TimeSpan,
    /// Requests with these methods wait for a person's approval.
    pub approval: Option<super::ManifestApproval>,
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP, only where a rule says so.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme's name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A rule's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// This host only.
    Exact(String),
    /// Any host ending in `.suffix` (not `suffix` itself).
    Subdomains(String),
}

impl HostPattern {
    /// True when `host` (lowercase, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() + 1 && host.ends_with(suffix.as_str()) && {
                    let cut = host.len() - suffix.len() - 1;
                    host.as_bytes()[cut] == b'.'
                }
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Caps of a rule written without them.
pub(crate) const DEFAULT_MAX_REQUESTS: u32 = 100;
pub(crate) const DEFAULT_MAX_BODY: ByteSize = ByteSize(10 << 20);
pub(crate) const DEFAULT_CONNECT_TIMEOUT: TimeSpan = TimeSpan(Duration::from_secs(10));
pub(crate) const DEFAULT_FIRST_BYTE_TIMEOUT: TimeSpan = TimeSpan(Duration::from_secs(30));
pub(crate) const DEFAULT_TOTAL_TIMEOUT: TimeSpan = TimeSpan(Duration::from_secs(60));

impl EgressRule {
    /// Parses a URL pattern into a rule allowing GET with default caps.
    pub fn parse(url: &str) -> Result<EgressRule, PatternError> {
        let bad = |why: &'static str| PatternError { url: url.to_owned(), why };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("has no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(bad("is neither http nor https")),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/*"),
        };
        if authority.contains('@') {
            return Err(bad("must not carry credentials"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("has a bad port"))?;
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("names no host"));
        }
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => HostPattern::Subdomains(suffix.to_owned()),
            Some(_) => return Err(bad("has a bad wildcard")),
            None if host.contains('*') => return Err(bad("may only use a wildcard as `*.` before a domain")),
            None => HostPattern::Exact(host),
        };
        if path.contains("..") || path.contains('?') || path.contains('#') {
            return Err(bad("path must not contain `..`, `?` or `#`"));
        }
        let addresses = match &host {
            HostPattern::Exact(host) => literal_ip(host).into_iter().collect(),
            HostPattern::Subdomains(_) => Vec::new(),
        };
        Ok(EgressRule {
            url: url.to_owned(),
            scheme,
            port: port.unwrap_or(scheme.default_port()),
            host,
            path: path.to_owned(),
            methods: vec!["GET".to_owned()],
            addresses,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_request_body: DEFAULT_MAX_BODY,
            max_response_body: DEFAULT_MAX_BODY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            approval: None,
        })
    }

    /// True when the rule allows this request line.
    pub fn allows(&self, request: &RequestLine<'_>) -> bool {
        self.scheme == request.scheme
            && self.port == request.port
            && self.host.matches(request.host)
            && self.methods.iter().any(|m| m == request.method)
            && path_matches(&self.path, request.path)
    }
}

/// Why an egress pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("egress pattern `{url}` {why}; write it like https://api.example.com/v1/*")]
pub struct PatternError {
    /// The pattern as written.
    pub url: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A request path that servers could normalise into a different one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("path `{path}`: {why} are refused")]
pub struct PathRefused {
    /// The path asked for.
    pub path: String,
    /// The form that is refused.
    pub why: &'static str,
}

/// Why the addresses a request's host resolved to were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefused {
    /// The name resolved to nothing.
    #[error("the name resolved to no address")]
    NoAddress,
    /// One address is in a class the rule does not open.
    #[error("address {address} is {} and rule {rule} does not name it", class.name())]
    NotNamed {
        /// The address.
        address: IpAddr,
        /// Its class (loopback, private, link-local, metadata, special).
        class: AddressClass,
        /// The rule's URL pattern.
        rule: String,
    },
}

/// What a rule is matched against.
#[derive(Clone, Copy, Debug)]
pub struct RequestLine<'a> {
    /// Scheme.
    pub scheme: Scheme,
    /// Host, lowercase, brackets removed from IPv6 literals.
    pub host: &'a str,
    /// Port (the scheme's default filled in).
    pub port: u16,
    /// Method, uppercase.
    pub method: &'a str,
    /// Path without query.
    pub path: &'a str,
}

/// Why no rule allowed a request, for the guest, the audit and the caller.
pub fn refusal(rules: &[EgressRule], request: &RequestLine<'_>) -> String {
    let target =
        format!("{} {}://{}:{}{}", request.method, request.scheme.name(), request.host, request.port, request.path);
    if rules.is_empty() {
        return format!("{target}: no egress is granted");
    }
    let same_host: Vec<&EgressRule> = rules.iter().filter(|r| r.host.matches(request.host)).collect();
    if same_host.is_empty() {
        return format!("{target}: host `{}` matches no egress rule", request.host);
    }
    let same_origin: Vec<&&EgressRule> =
        same_host.iter().filter(|r| r.scheme == request.scheme && r.port == request.port).collect();
    let Some(rule) = same_origin.first() else {
        return format!("{target}: scheme or port not allowed for `{}` (rule {})", request.host, same_host[0].url);
    };
    if !same_origin.iter().any(|r| path_matches(&r.path, request.path)) {
        return format!("{target}: path outside the rule's pattern (rule {})", rule.url);
    }
    format!("{target}: method {} not allowed (rule {} allows {})", request.method, rule.url, rule.methods.join(", "))
}

/// `*` matches any run of characters; everything else matches itself.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (index, part) in parts.iter().enumerate() {
        let last = index == parts.len() - 1;
        if last {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Checks a request path before any rule is matched, so what a rule's
/// pattern sees is what a server will act on. Servers and proxies normalise
/// paths in different ways (decoding `%2e`, treating `\\` as `/`, dropping
/// `;parameters`, decoding twice), and each way turns a path that matches
/// `/v1/*` into one that climbs out of it. Every form that some server
/// normalises into a different path is refused, with the reason:
/// dot segments (plain, encoded, or surrounded by blanks), backslashes,
/// `;` parameters, percent-encoded `/`, `\\`, `.`, `;` or `%` (double
/// encoding), malformed escapes, control characters, and escapes that are
/// not UTF-8 (overlong forms of `.` and `/`).
pub fn check_request_path(path: &str) -> Result<(), PathRefused> {
    let refuse = |why: &'static str| Err(PathRefused { path: path.to_owned(), why });
    if path.contains('\\') {
        return refuse("backslashes");
    }
    if path.contains(';') {
        return refuse("`;` path parameters");
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).and_then(|h| std::str::from_utf8(h).ok());
            let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return refuse("malformed percent escapes");
            };
            match byte {
                b'/' | b'\\' | b'.' | b';' => return refuse("percent-encoded `/`, `\\`, `.` and `;`"),
                b'%' => return refuse("double-encoded escapes (`%25`)"),
                _ => decoded.push(byte),
            }
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    let Ok(decoded) = String::from_utf8(decoded) else {
        return refuse("escapes that are not UTF-8");
    };
    if decoded.chars().any(char::is_control) {
        return refuse("control characters");
    }
    if decoded.split('/').any(|segment| matches!(segment.trim(), "." | "..")) {
        return refuse("dot segments (`.`, `..`)");
    }
    Ok(())
}

/// Methods a rule that carries a credential may never allow: TRACE echoes
/// the request, injected header included, back to the tool; CONNECT opens
/// a tunnel the host cannot see into.
pub const NEVER_WITH_CREDENTIALS: [&str; 2] = ["TRACE", "CONNECT"];

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn literal_ip(host: &str) -> Option<IpAddr> {
    host.parse().ok()
}

/// Why an address may not be reached without a rule naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// A public address: allowed when a rule allows the request.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (shared), fc00::/7 (unique local).
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// Cloud metadata endpoints: 169.254.169.254, 169.254.170.2, fd00:ec2::254, 100.100.100.200.
    Metadata,
    /// Multicast, broadcast, unspecified, reserved and documentation ranges.
    Special,
}

impl AddressClass {
    /// Its name in refusals.
    pub fn name(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "cloud metadata",
            AddressClass::Special => "special-purpose",
        }
    }
}

/// Classifies an address. IPv4-mapped and IPv4-compatible IPv6 forms are
/// classified as the IPv4 address they carry, so `::ffff:127.0.0.1` is loopback.
pub fn classify_address(address: IpAddr) -> AddressClass {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, d] = ip.octets();
    if [[169, 254, 169, 254], [169, 254, 170, 2], [100, 100, 100, 200]].contains(&[a, b, c, d]) {
        return AddressClass::Metadata;
    }
    match (a, b) {
        (127, _) => AddressClass::Loopback,
        (10, _) | (192, 168) => AddressClass::Private,
        (172, 16..=31) | (100, 64..=127) => AddressClass::Private,
        (169, 254) => AddressClass::LinkLocal,
        (0, _) | (224..=255, _) => AddressClass::Special,
        (192, 0) if c == 0 || c == 2 => AddressClass::Special,
        (198, 18..=19) => AddressClass::Special,
        (198, 51) if c == 100 => AddressClass::Special,
        (203, 0) if c == 113 => AddressClass::Special,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let segments = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return AddressClass::Metadata;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return AddressClass::Special;
    }
    // Forms that carry an IPv4 address in their last 32 bits: IPv4-compatible
    // (deprecated) ::a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d (RFC 2765) and
    // well-known NAT64 64:ff9b::/96 (RFC 6052). They reach what the IPv4
    // address reaches.
    if segments[..6] == [0; 6]
        || segments[..6] == [0, 0, 0, 0, 0xffff, 0]
        || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        return classify_v4(embedded(segments[6], segments[7]));
    }
    // 6to4 (2002::/16, RFC 3056) reaches the IPv4 address in bits 16..48.
    if segments[0] == 0x2002 {
        return classify_v4(embedded(segments[1], segments[2]));
    }
    match segments[0] {
        // Local-use NAT64 (64:ff9b:1::/48, RFC 8215): translated inside the
        // operator's own network, so private whatever it embeds.
        0x64 if segments[1] == 0xff9b && segments[2] == 1 => AddressClass::Private,
        0xfc00..=0xfdff => AddressClass::Private,
        // Site-local (fec0::/10, deprecated by RFC 3879): private by intent.
        0xfec0..=0xfeff => AddressClass::Private,
        0xfe80..=0xfebf => AddressClass::LinkLocal,
        // Teredo (2001::/32, RFC 4380) tunnels to an obfuscated IPv4 address
        // through a relay: where it ends cannot be checked.
        0x2001 if segments[1] == 0 => AddressClass::Special,
        // Documentation (2001:db8::/32), benchmarking (2001:2::/48), ORCHID (2001:10::/28, 2001:20::/28).
        0x2001 if segments[1] == 0x0db8 || segments[1] == 2 || (0x10..=0x2f).contains(&segments[1]) => {
            AddressClass::Special
        }
        // Discard-only (100::/64).
        0x0100 if segments[1..4] == [0, 0, 0] => AddressClass::Special,
        _ => AddressClass::Public,
    }
}

/// Checks every resolved address of a request against the rule: public
/// ones pass, others only if the rule names them.
pub fn check_addresses(rule: &EgressRule, addresses: &[IpAddr]) -> Result<(), AddressRefused> {
    if addresses.is_empty() {
        return Err(AddressRefused::NoAddress);
    }
    for address in addresses {
        let class = classify_address(*address);
        if class != AddressClass::Public && !rule.addresses.contains(address) {
            return Err(AddressRefused::NotNamed { address: *address, class, rule: rule.url.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(method: &'a str, scheme: Scheme, host: &'a str, port: u16, path: &'a str) -> RequestLine<'a> {
        RequestLine { scheme, host, port, method, path }
    }

    #[test]
    fn patterns_parse() {
        let rule = EgressRule::parse("https://API.example.com/v1/*").unwrap();
        assert_eq!((rule.scheme, rule.port, rule.path.as_str()), (Scheme::Https, 443, "/v1/*"));
        assert_eq!(rule.host, HostPattern::Exact("api.example.com".into()));
        let rule = EgressRule::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((rule.port, rule.path.as_str()), (8080, "/*"));
        assert_eq!(rule.addresses, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let rule = EgressRule::parse("https://[::1]:8443/x").unwrap();
        assert_eq!(rule.host, HostPattern::Exact("::1".into()));
        assert!(EgressRule::parse("https://*.example.com/*").is_ok());
        for bad in
            ["ftp://x/*", "example.com/*", "https://user:pw@x/", "https://a*.b/", "https://x:99999/", "https://x/../y"]
        {
            assert!(EgressRule::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn wildcard_hosts_match_subdomains_only() {
        let host = HostPattern::Subdomains("example.com".into());
        assert!(host.matches("api.example.com"));
        assert!(host.matches("a.b.example.com"));
        assert!(!host.matches("example.com"));
        assert!(!host.matches("evilexample.com"));
        assert!(!host.matches("example.com.evil.net"));
    }

    #[test]
    fn rules_match_scheme_host_port_method_and_path() {
        let mut rule = EgressRule::parse("https://api.example.com/v1/*").unwrap();
        rule.methods = vec!["GET".into(), "POST".into()];
        assert!(rule.allows(&line("GET", Scheme::Https, "api.example.com", 443, "/v1/repos")));
        assert!(rule.allows(&line("POST", Scheme::Https, "api.example.com", 443, "/v1/")));
        assert!(!rule.allows(&line("DELETE", Scheme::Https, "api.example.com", 443, "/v1/repos")));
        assert!(!rule.allows(&line("GET", Scheme::Http, "api.example.com", 443, "/v1/repos")));
        assert!(!rule.allows(&line("GET", Scheme::Https, "api.example.com", 8443, "/v1/repos")));
        assert!(!rule.allows(&line("GET", Scheme::Https, "api.example.com", 443, "/v2/repos")));
        assert!(!rule.allows(&line("GET", Scheme::Https, "other.example.com", 443, "/v1/repos")));
    }

    #[test]
    fn refusals_name_what_failed() {
        let rules = vec![EgressRule::parse("https://api.example.com/v1/*").unwrap()];
        let r = |m, s, h, p, path| refusal(&rules, &line(m, s, h, p, path));
        assert!(r("GET", Scheme::Https, "evil.test", 443, "/").contains("host `evil.test` matches no egress rule"));
        assert!(r("GET", Scheme::Https, "api.example.com", 8443, "/v1/x").contains("scheme or port not allowed"));
        assert!(r("GET", Scheme::Https, "api.example.com", 443, "/admin").contains("path outside"));
        assert!(r("PUT", Scheme::Https, "api.example.com", 443, "/v1/x").contains("method PUT not allowed"));
        assert!(refusal(&[], &line("GET", Scheme::Https, "x", 443, "/")).contains("no egress is granted"));
    }

    #[test]
    fn path_patterns() {
        assert!(path_matches("/*", "/"));
        assert!(path_matches("/v1/*", "/v1/a/b"));
        assert!(!path_matches("/v1/*", "/v10/a"));
        assert!(path_matches("/v1/*/issues", "/v1/repo/issues"));
        assert!(!path_matches("/v1/*/issues", "/v1/repo/pulls"));
        assert!(path_matches("/exact", "/exact"));
        assert!(!path_matches("/exact", "/exact/more"));
    }

    #[test]
    fn request_paths_that_servers_normalise_elsewhere_are_refused() {
        for refused in [
            "/v1/../admin",
            "/v1/./admin",
            "/v1/%2e%2e/admin",
            "/v1/%2E%2E%2Fadmin",
            "/v1/.%2e/admin",
            "/v1/..;/admin",
            "/v1/;x=1/admin",
            "/v1/..\\admin",
            "/v1/..%5cadmin",
            "/v1/..%5Cadmin",
            "/v1/%252e%252e/admin",
            "/v1/%25%32%65",
            "/v1/%2fadmin",
            "/v1/%3b/admin",
            "/v1/%c0%ae%c0%ae/admin",
            "/v1/%00",
            "/v1/%0d%0aX:1",
            "/v1/%zz",
            "/v1/%2",
            "/v1/%20../admin",
            "/v1/..%20/admin",
            "/v1/%09../admin",
        ] {
            assert!(check_request_path(refused).is_err(), "{refused} passed");
        }
        for allowed in ["/v1/file..txt", "/v1/a.b/c", "/v1/%41bc", "/v1/caf%C3%A9", "/", "/v1/...x", "/v1/a%20b"] {
            assert!(check_request_path(allowed).is_ok(), "{allowed}: {:?}", check_request_path(allowed));
        }
        let reason = check_request_path("/v1/..;/admin").unwrap_err();
        assert_eq!(reason, PathRefused { path: "/v1/..;/admin".into(), why: "`;` path parameters" });
        assert!(reason.to_string().contains("`;` path parameters"), "{reason}");
    }

    #[test]
    fn addresses_are_classified_without_any_socket() {
        let class = |s: &str| classify_address(s.parse().unwrap());
        assert_eq!(class("169.254.169.254"), AddressClass::Metadata);
        assert_eq!(class("169.254.170.2"), AddressClass::Metadata);
        assert_eq!(class("100.100.100.200"), AddressClass::Metadata);
        assert_eq!(class("fd00:ec2::254"), AddressClass::Metadata);
        assert_eq!(class("::ffff:169.254.169.254"), AddressClass::Metadata);
        assert_eq!(class("127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("127.8.9.10"), AddressClass::Loopback);
        assert_eq!(class("::1"), AddressClass::Loopback);
        assert_eq!(class("::ffff:127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("::127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("64:ff9b::7f00:1"), AddressClass::Loopback);
        for private in ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1", "fd12::1", "fc00::1"] {
            assert_eq!(class(private), AddressClass::Private, "{private}");
        }
        assert_eq!(class("169.254.1.1"), AddressClass::LinkLocal);
        assert_eq!(class("fe80::1"), AddressClass::LinkLocal);
        for special in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1", "192.0.2.1", "2001:db8::1"] {
            assert_eq!(class(special), AddressClass::Special, "{special}");
        }
        // Forms that embed or reach private space.
        assert_eq!(class("::ffff:0:7f00:1"), AddressClass::Loopback, "IPv4-translated");
        assert_eq!(class("::ffff:0:a9fe:a9fe"), AddressClass::Metadata, "IPv4-translated metadata");
        assert_eq!(class("2002:7f00:1::1"), AddressClass::Loopback, "6to4 of 127.0.0.1");
        assert_eq!(class("2002:a00:1::"), AddressClass::Private, "6to4 of 10.0.0.1");
        assert_eq!(class("2002:a9fe:a9fe::"), AddressClass::Metadata, "6to4 of the metadata address");
        assert_eq!(class("64:ff9b:1::a00:1"), AddressClass::Private, "local-use NAT64");
        assert_eq!(class("64:ff9b:1:ffff::808:808"), AddressClass::Private, "local-use NAT64, any suffix");
        assert_eq!(class("64:ff9b::a9fe:a9fe"), AddressClass::Metadata, "well-known NAT64 of metadata");
        assert_eq!(class("2001:0:4136:e378:8000:63bf:3fff:fdd2"), AddressClass::Special, "Teredo");
        assert_eq!(class("fec0::1"), AddressClass::Private, "site-local");
        assert_eq!(class("feff::1"), AddressClass::Private, "site-local, top of the range");
        assert_eq!(class("100::1"), AddressClass::Special, "discard-only");
        assert_eq!(class("2001:2::1"), AddressClass::Special, "benchmarking");
        for public in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "2002:808:808::1", "2001:4860::8888"]
        {
            assert_eq!(class(public), AddressClass::Public, "{public}");
        }
    }

    #[test]
    fn private_addresses_need_a_rule_naming_them() {
        let named = EgressRule::parse("http://127.0.0.1:8080/*").unwrap();
        assert!(check_addresses(&named, &["127.0.0.1".parse().unwrap()]).is_ok());
        let by_name = EgressRule::parse("http://api.test:8080/*").unwrap();
        let err = check_addresses(&by_name, &["127.0.0.1".parse().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("127.0.0.1 is loopback"), "{err}");
        let err =
            check_addresses(&by_name, &["8.8.8.8".parse().unwrap(), "169.254.169.254".parse().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("cloud metadata"), "{err}");
        assert!(matches!(err, AddressRefused::NotNamed { class: AddressClass::Metadata, .. }), "{err}");
        assert_eq!(check_addresses(&by_name, &[]), Err(AddressRefused::NoAddress));
        let mut allowed = by_name.clone();
        allowed.addresses = vec!["127.0.0.1".parse().unwrap()];
        assert!(check_addresses(&allowed, &["127.0.0.1".parse().unwrap()]).is_ok());
    }
}
