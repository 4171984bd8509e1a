//! One MCP `tools/call` round trip over stdio for a trivial tool: a client
//! writes the JSON-RPC request to `toolcell serve`'s stdin and reads the
//! answer from its stdout. Everything is in it: JSON-RPC, the task, a fresh
//! sandboxed instance, teardown and the audit trail (to a file).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

fn mcp(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = common::word_count_manifest(dir.path());
    let mut server = Command::new(env!("CARGO_BIN_EXE_toolcell"))
        .arg("serve")
        .arg("--manifest")
        .arg(&manifest)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = server.stdin.take().unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    let mut exchange = |request: &str, line: &mut String, answered: bool| {
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        line.clear();
        if answered {
            stdout.read_line(line).unwrap();
        }
    };
    exchange(
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#,
        &mut line,
        true,
    );
    assert!(line.contains("\"result\""), "initialize failed: {line}");
    exchange(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &mut line, false);

    let mut id = 0u64;
    c.bench_function("mcp/stdio tools/call word-count", |b| {
        b.iter(|| {
            id += 1;
            let request = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"word-count","arguments":{{"text":"hello world"}}}}}}"#
            );
            exchange(&request, &mut line, true);
            assert!(line.contains(r#"\"words\":2"#), "{line}");
        })
    });
    // Closing stdin ends the server.
    drop(stdin);
    let _ = server.wait();
}

criterion_group!(benches, mcp);
criterion_main!(benches);
