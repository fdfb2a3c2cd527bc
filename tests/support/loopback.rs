//! A loopback HTTP server in a few lines of std, and log capture, for the
//! lifecycle tests (the host machinery and the component).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

// ---------------------------------------------------------------- server

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn form(&self) -> HashMap<String, String> {
        self.body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.header("cookie")?.split(';').find_map(|c| {
            let (n, v) = c.trim().split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub enum Resp {
    Reply(u16, Vec<(String, String)>, String),
    /// Close the connection without an answer.
    Drop,
}

pub fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Resp {
    Resp::Reply(
        status,
        headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        body.to_string(),
    )
}

/// An OAuth token endpoint's refresh-token rotation: the previous token
/// still works (a grace window, as Auth0/Okta offer), and the answer to a
/// rotation can be dropped after the server rotated (`drop_next`).
#[derive(Default)]
pub struct Rotation {
    pub current: String,
    pub previous: Option<String>,
    pub issued: u32,
    pub drop_next: bool,
}

impl Rotation {
    /// Answers a refresh-token grant with the form's `refresh_token`.
    pub fn grant(&mut self, form: &HashMap<String, String>) -> Resp {
        let rt = form.get("refresh_token").cloned().unwrap_or_default();
        if rt != self.current && Some(&rt) != self.previous.as_ref() {
            return reply(
                400,
                &[("Content-Type", "application/json")],
                r#"{"error":"invalid_grant"}"#,
            );
        }
        self.issued += 1;
        let new = format!("rt-{}-{}", self.issued, self.current.len());
        self.previous = Some(rt);
        self.current = new.clone();
        if std::mem::take(&mut self.drop_next) {
            return Resp::Drop;
        }
        let body = format!(
            r#"{{"access_token":"at-{}","token_type":"Bearer","expires_in":3600,"refresh_token":"{new}"}}"#,
            self.issued
        );
        reply(200, &[("Content-Type", "application/json")], &body)
    }
}

pub struct Server {
    pub base: String,
    pub hits: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    pub fn hits(&self, path: &str) -> Vec<Req> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.starts_with(path))
            .cloned()
            .collect()
    }
}

pub fn serve(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let h2 = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            let hits = h2.clone();
            std::thread::spawn(move || {
                let _ = handle(stream, &*handler, &hits);
            });
        }
    });
    Server { base, hits }
}

pub fn handle(
    stream: TcpStream,
    handler: &dyn Fn(&Req) -> Resp,
    hits: &Mutex<Vec<Req>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let req = Req {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    hits.lock().unwrap().push(req.clone());
    let mut stream = stream;
    match handler(&req) {
        Resp::Drop => Ok(()),
        Resp::Reply(status, headers, body) => {
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (n, v) in headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            stream.write_all(out.as_bytes())
        }
    }
}

// ------------------------------------------------------------ log capture

pub static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

pub struct Capture(pub Arc<Mutex<Vec<u8>>>);
impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, at every level.
pub fn logs() -> String {
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b2 = buf.clone();
        // No timestamps: their six-digit microseconds would now and then
        // equal a one-time code a leak check looks for.
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .without_time()
            .with_writer(move || Capture(b2.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(sub);
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

pub fn canary(label: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!(
        "SECRET{label}{n}x{:x}",
        std::process::id() as u64 * 7919 + n
    )
}
