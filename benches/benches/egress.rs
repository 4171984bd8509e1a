//! The egress check on one request: the probe tool makes one GET to a
//! loopback HTTP server, under toolcell (rule match, header strip, host-side
//! resolution, address classification, capped bodies, audit event — and
//! toolcell's per-call work) and on a floor whose `wasi:http` sends the same
//! request straight to the server with no check at all. Both instantiate the
//! same component fresh per call.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use toolcell_runtime::{
    Call, EgressRule, EngineSettings, FloorState, Manifest, Runtime, RuntimeConfig, StaticResolver, TaskRequest,
    ToolEngine, floor_linker,
};
use toolcell_test_guests as guests;
use wasmtime::component::Val;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpHooks;
use wasmtime_wasi_http::io::TokioIo;

/// A loopback server answering every request with `ok`.
async fn server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    port
}

/// The floor's wasi:http: straight to the request's authority, unchecked.
struct Unchecked;

impl WasiHttpHooks for Unchecked {
    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _errors: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> toolcell_runtime::SendRequestFuture {
        Box::new(async move {
            fn failed(e: &dyn std::fmt::Display) -> wasmtime_wasi_http::Error {
                wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
            }
            let authority = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
            let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| failed(&e))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
            // The connection runs beside the request; the response streams through it.
            let conn = tokio::spawn(conn);
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
            *request.uri_mut() = path.parse().unwrap();
            let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
            let response = response.map(|body| body.map_err(|e| failed(&e)).boxed_unsync());
            let conn: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                Box::new(async move { conn.await.map_err(|e| failed(&e))?.map_err(|e| failed(&e)) });
            Ok((response, conn))
        })
    }
}

fn egress(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let port = rt.block_on(server());
    let cache = tempfile::tempdir().unwrap();
    let settings = EngineSettings { cache_dir: Some(cache.path().to_owned()), ..EngineSettings::default() };
    let engine = ToolEngine::new(settings).unwrap();
    let hosts = HashMap::from([("api.bench".to_owned(), vec!["127.0.0.1".parse().unwrap()])]);
    let config =
        RuntimeConfig { resolver: Arc::new(StaticResolver { hosts, fallback: None }), ..RuntimeConfig::default() };
    let runtime = Runtime::with_engine(engine.clone(), config).unwrap();
    let mut manifest = Manifest::ad_hoc(Path::new(guests::PROBE_TOOL));
    let mut rule = EgressRule::parse(&format!("http://api.bench:{port}/*")).unwrap();
    rule.addresses = vec!["127.0.0.1".parse().unwrap()];
    manifest.egress = vec![rule];
    let tool = runtime.load_tool(manifest).unwrap();
    let task = runtime.open_task(&tool, TaskRequest::new("bench", Duration::from_secs(86_400))).unwrap();
    let checked = format!(r#"{{"action":"http","method":"GET","url":"http://api.bench:{port}/ok"}}"#);
    let unchecked = format!(r#"{{"action":"http","method":"GET","url":"http://127.0.0.1:{port}/ok"}}"#);

    let linker = floor_linker::<FloorState<Unchecked>>(&engine).unwrap();
    let component = wasmtime::component::Component::from_file(engine.wasmtime(), guests::PROBE_TOOL).unwrap();
    let pre = linker.instantiate_pre(&component).unwrap();
    let invoke = component.get_export_index(None, "invoke").unwrap();

    let mut group = c.benchmark_group("one loopback GET");
    group.bench_function("floor (unchecked)", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = FloorState::new(WasiCtxBuilder::new().build(), Unchecked).into_store(&engine);
            let instance = pre.instantiate_async(&mut store).await.unwrap();
            let func = instance.get_func(&mut store, invoke).unwrap();
            let mut results = vec![Val::Bool(false)];
            func.call_async(&mut store, &[Val::String(unchecked.clone())], &mut results).await.unwrap();
            assert!(matches!(&results[0], Val::Result(Ok(_))), "{:?}", results[0]);
        })
    });
    group.bench_function("toolcell (checked)", |b| {
        b.to_async(&rt).iter(|| async { assert!(task.invoke(Call::tool(checked.clone())).await.unwrap().succeeded()) })
    });
    group.finish();
}

criterion_group!(benches, egress);
criterion_main!(benches);
