//! A small local HTTPS server for tests of remote sources (APIBAN now, AbuseIPDB later).
//!
//! It listens on 127.0.0.1 (a random port) with rustls and the test certificate in
//! `tests/data/tls` (valid for `localhost` and `127.0.0.1`, signed by the test CA `ca.pem`), so
//! clients are tested with certificate checks ON: they must be given the test CA (a `ca_file`
//! or `SSL_CERT_FILE`). Every request is answered by a handler the test writes, and logged with
//! the instant its head arrived, its method, path, headers and body.
//!
//! HTTP/1.1 only, one request per connection (`Connection: close`), which is all reqwest needs.
//! Besides ordinary answers the handler can make the server stall (accept a request and never
//! answer), stall after part of a body, or drop the connection. The server runs on its own
//! thread and runtime and stops when dropped; its traffic never leaves the loopback interface.

#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// When its head had fully arrived.
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// What the server does with a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete answer. With `content_length: false` the body is delimited by closing the
    /// connection (no `Content-Length`), as a misbehaving server might send it.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        content_length: bool,
    },
    /// Read the request and never answer (the connection stays open until the server stops).
    Stall,
    /// Send the status line, headers with `Content-Length: declared` and `sent`, then stall.
    StallBody {
        status: u16,
        declared: usize,
        sent: Vec<u8>,
    },
    /// Close the connection without answering.
    Drop,
}

impl Reply {
    /// A JSON answer with the given status.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            content_length: true,
        }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// The test CA that signed the server's certificate.
pub fn ca_file() -> PathBuf {
    tls_dir().join("ca.pem")
}

fn tls_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls")
}

/// A running server; stops when dropped.
pub struct HttpsServer {
    port: u16,
    log: Arc<Mutex<Vec<Request>>>,
    count: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpsServer {
    /// Start a server that answers every request with `handler`.
    pub fn start<F>(handler: F) -> HttpsServer
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let handler: Handler = Arc::new(handler);
        let config = Arc::new(server_config());
        let log = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (log2, count2) = (log.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1:0");
                port_tx
                    .send(listener.local_addr().expect("local addr").port())
                    .expect("send port");
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, handler) = (acceptor.clone(), handler.clone());
                        let (log, count) = (log2.clone(), count2.clone());
                        tokio::spawn(async move {
                            // A failed handshake (e.g. a client that does not trust the CA)
                            // is the client's business: nothing to log.
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve_one(tls, handler, log, count).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime cancels stalled connections.
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("test server did not start");
        HttpsServer {
            port,
            log,
            count,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://localhost:PORT` (the certificate also covers `127.0.0.1`).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Requests received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().expect("log lock").clone()
    }

    /// How many requests have been received (cheap, for polling).
    pub fn request_count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn server_config() -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tls_dir();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("read server.pem")
        .collect::<Result<_, _>>()
        .expect("parse server.pem");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("read server.key");
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate")
}

const MAX_HEAD: usize = 64 * 1024;

async fn serve_one<S>(
    mut stream: S,
    handler: Handler,
    log: Arc<Mutex<Vec<Request>>>,
    count: Arc<AtomicUsize>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    let req = Request {
        at,
        method,
        path,
        headers,
        body,
    };
    let reply = handler(&req);
    log.lock().expect("log lock").push(req);
    count.fetch_add(1, Ordering::SeqCst);
    match reply {
        Reply::Full {
            status,
            headers,
            body,
            content_length,
        } => {
            let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            for (n, v) in &headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            if content_length {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("Connection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
        }
        Reply::Stall => std::future::pending::<()>().await,
        Reply::StallBody {
            status,
            declared,
            sent,
        } => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n",
                reason(status)
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&sent).await;
            let _ = stream.flush().await;
            std::future::pending::<()>().await
        }
        Reply::Drop => {}
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
