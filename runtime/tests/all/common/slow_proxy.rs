//! A loopback TCP proxy in front of a real server that holds back requests
//! whose request line contains a chosen word (`revoke`, `pki/issue`) for a
//! while, and says when it sees one. Tests use it to put a revocation or a
//! mint in flight at a moment of their choosing, then drop the caller there.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops with the test's runtime.
pub struct SlowProxy {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    held: Arc<AtomicUsize>,
    seen: Arc<tokio::sync::Notify>,
}

impl SlowProxy {
    /// Proxies to `upstream` (`127.0.0.1:PORT`), holding requests whose first
    /// line contains `word` for `delay` before forwarding them.
    pub async fn start(upstream: String, word: &'static str, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let held = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(tokio::sync::Notify::new());
        let (held_count, notify) = (held.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstream, held, notify) = (upstream.clone(), held_count.clone(), notify.clone());
                tokio::spawn(async move {
                    let mut head = vec![0u8; 16 << 10];
                    let Ok(read) = client.read(&mut head).await else { return };
                    head.truncate(read);
                    let first_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
                    if String::from_utf8_lossy(first_line).contains(word) {
                        held.fetch_add(1, Ordering::SeqCst);
                        notify.notify_waiters();
                        tokio::time::sleep(delay).await;
                    }
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    if server.write_all(&head).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        SlowProxy { address, held, seen }
    }

    /// Resolves once a request with the word has arrived (and is being held).
    pub async fn holding(&self) {
        loop {
            let seen = self.seen.notified();
            if self.held.load(Ordering::SeqCst) > 0 {
                return;
            }
            seen.await;
        }
    }
}
