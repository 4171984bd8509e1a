//! Environment and network: only granted variables are visible; raw
//! sockets and name lookup are refused. Every socket attempt aims at
//! loopback, so a bug could never send a packet off this machine.

use crate::common::*;
use toolcell_runtime::{EnvGrant, EnvSource, SocketGrant, SocketProtocol};

#[tokio::test]
async fn only_granted_variables_are_visible() {
    let h = Harness::new();
    let report = h
        .probe(&["env"], |m| {
            m.env = vec![
                EnvGrant { name: "GREETING".into(), source: EnvSource::Value("hello".into()) },
                EnvGrant { name: "PATH".into(), source: EnvSource::Host },
                EnvGrant { name: "PROBE_TEST_UNSET_VARIABLE".into(), source: EnvSource::Host },
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

#[tokio::test]
async fn a_socket_grant_opens_exactly_one_address() {
    let h = Harness::new();
    let granted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (granted_addr, other_addr) = (granted.local_addr().unwrap(), other.local_addr().unwrap());
    other.set_nonblocking(true).unwrap();
    let grant = |m: &mut toolcell_runtime::Manifest| {
        m.sockets = vec![SocketGrant { protocol: SocketProtocol::Tcp, address: granted_addr }]
    };
    assert_eq!(
        assert_allowed(&h.probe(&["tcp-connect", &granted_addr.to_string()], grant).await.unwrap()),
        "connected\n"
    );
    assert!(granted.accept().is_ok(), "the granted connection arrived");
    // Another port on the same host, listening, and name lookup stay refused.
    assert_denied(&h.probe(&["tcp-connect", &other_addr.to_string()], grant).await.unwrap());
    assert_denied(&h.probe(&["tcp-listen", "127.0.0.1:0"], grant).await.unwrap());
    assert_denied(&h.probe(&["lookup", "localhost:80"], grant).await.unwrap());
    assert_denied(&h.probe(&["udp-send", &granted_addr.to_string()], grant).await.unwrap());
    assert!(other.accept().is_err(), "a refused connection arrived");
    // Each refused operation is on the record, with what was asked; the granted connect is not a refusal.
    let sockets: Vec<serde_json::Value> = h.audit_events().into_iter().filter(|e| e["event"] == "socket").collect();
    let refused = |operation: &str, address: &str| {
        sockets.iter().any(|e| e["decision"] == "denied" && e["operation"] == operation && e["address"] == address)
    };
    assert!(refused("tcp_connect", &other_addr.to_string()), "{sockets:?}");
    assert!(refused("tcp_listen", "127.0.0.1:0") || refused("tcp_bind", "127.0.0.1:0"), "{sockets:?}");
    assert!(!refused("tcp_connect", &granted_addr.to_string()), "{sockets:?}");
    assert!(sockets.iter().all(|e| e["reason"].as_str().is_some_and(|r| !r.is_empty())), "{sockets:?}");
}

#[tokio::test]
async fn a_udp_grant_sends_to_its_address_only() {
    let h = Harness::new();
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = receiver.local_addr().unwrap();
    receiver.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let grant =
        |m: &mut toolcell_runtime::Manifest| m.sockets = vec![SocketGrant { protocol: SocketProtocol::Udp, address }];
    assert_allowed(&h.probe(&["udp-send", &address.to_string()], grant).await.unwrap());
    let mut buffer = [0u8; 16];
    let (n, _) = receiver.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"probe");
    let elsewhere = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    assert_denied(&h.probe(&["udp-send", &elsewhere.to_string()], grant).await.unwrap());
    assert_denied(&h.probe(&["tcp-connect", &address.to_string()], grant).await.unwrap());
}
