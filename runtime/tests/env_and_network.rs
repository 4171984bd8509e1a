//! Environment and network: only granted variables are visible; raw
//! sockets and name lookup are refused. Every socket attempt aims at
//! loopback, so a bug could never send a packet off this machine.

mod common;

use common::*;
use toolcell_runtime::{EnvGrant, EnvSource};

#[tokio::test]
async fn only_granted_variables_are_visible() {
    let h = Harness::new();
    let report = h
        .probe(&["env"], |m| {
            m.env = vec![
                EnvGrant { name: "GREETING".into(), source: EnvSource::Value("hello".into()) },
                EnvGrant { name: "PATH".into(), source: EnvSource::Host },
                EnvGrant { name: "TOOLCELL_TEST_UNSET_VARIABLE".into(), source: EnvSource::Host },
            ]
        })
        .await
        .unwrap();
    let out = assert_allowed(&report);
    let names: Vec<&str> = out.lines().map(|line| line.split('=').next().unwrap()).collect();
    assert_eq!(names, ["GREETING", "PATH"], "{out}");
    assert!(out.contains("GREETING=hello"));
    assert!(out.contains(&format!("PATH={}", std::env::var("PATH").unwrap())));
}

#[tokio::test]
async fn no_variable_leaks_without_a_grant() {
    let h = Harness::new();
    assert!(std::env::var("HOME").is_ok() || std::env::var("PATH").is_ok());
    let report = h.probe(&["env"], |_| {}).await.unwrap();
    assert_eq!(assert_allowed(&report), "\n");
    let report = h.probe_tool(r#"{"action":"env"}"#, |_| {}).await.unwrap();
    assert_eq!(report.result, toolcell_runtime::CallResult::Output("{}".into()));
}

#[tokio::test]
async fn raw_sockets_and_name_lookup_are_refused() {
    let h = Harness::new();
    // A real listener on loopback: a connect that got through would succeed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let attempts: [&[&str]; 6] = [
        &["tcp-connect", &target],
        &["tcp-listen", "127.0.0.1:0"],
        &["udp-bind", "127.0.0.1:0"],
        &["udp-send", &target],
        &["lookup", "localhost:80"],
        &["lookup", "example.com:443"],
    ];
    for args in attempts {
        let report = h.probe(args, |_| {}).await.unwrap();
        assert_denied(&report);
    }
    assert!(listener.accept().is_err(), "a guest connection reached the loopback listener");
}
