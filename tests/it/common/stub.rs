//! A scripted plain-HTTP stub server for feed tests: each path answers with a status, headers,
//! a body and an optional delay (to simulate a stalled server), and every request is counted.
//! Start it from inside the namespace the code under test runs in (see `netns::run_in`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sleep this long before answering (headers included).
    pub delay: Duration,
    /// Answer 304 Not Modified (no body) to a request with If-None-Match or
    /// If-Modified-Since, as a server whose list has not changed does.
    pub not_modified_when_conditional: bool,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.into(),
            delay: Duration::ZERO,
            not_modified_when_conditional: false,
        }
    }
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            ..Reply::ok(body)
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        self.headers.push((k.into(), v.into()));
        self
    }
    /// 304 to every conditional request, this reply to the others.
    pub fn unchanged_when_asked(mut self) -> Reply {
        self.not_modified_when_conditional = true;
        self
    }
    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// Whether the request carried a validator (If-None-Match or If-Modified-Since).
    pub fn conditional(&self) -> bool {
        self.headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("if-none-match") || k.eq_ignore_ascii_case("if-modified-since")
        })
    }
}

pub struct Stub {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Stub {
    pub fn start() -> Stub {
        Stub::start_on("127.0.0.1:0")
    }

    /// A stub listening on `addr` (e.g. an address of a veth in the test's namespace).
    pub fn start_on(addr: &str) -> Stub {
        let listener = TcpListener::bind(addr).expect("bind stub");
        let addr = listener.local_addr().expect("stub addr");
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let (r, l) = (routes.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, l) = (r.clone(), l.clone());
                std::thread::spawn(move || serve(stream, &r, &l));
            }
        });
        Stub { addr, routes, log }
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn serve(stream: TcpStream, routes: &Mutex<HashMap<String, Reply>>, log: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let conditional = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("if-none-match") || k.eq_ignore_ascii_case("if-modified-since")
    });
    log.lock().unwrap().push(Request {
        path: path.clone(),
        headers,
    });
    let mut reply = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or_else(|| Reply::status(404, "not found"));
    if conditional && reply.not_modified_when_conditional {
        reply.status = 304;
        reply.body.clear();
    }
    std::thread::sleep(reply.delay);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&reply.body);
}
