//! The HTTP side: one client (rustls, no automatic redirects so a login's
//! `Location` and `Set-Cookie` are seen, a time limit on every request),
//! answers reduced to what the rules need, and the detection rules.

use super::sites::SiteConfig;
use crate::bindings::refresh::RefreshFailure;
use std::time::Duration;

/// Bodies are read up to this size; rules look at the start of a page.
pub const MAX_BODY: usize = 1 << 20;

/// What came back from a request.
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// The shared client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("credpool/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds with static settings")
}

/// An answer with its body as bytes (an image), up to [`MAX_BODY`].
pub struct Fetched {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub set_cookies: Vec<String>,
    pub bytes: Vec<u8>,
}

/// Sends a request under `timeout`; a failure is classified, never quoted
/// (reqwest's messages contain URLs, which may carry tokens).
pub async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, RefreshFailure> {
    let f = fetch(req, timeout).await?;
    Ok(Answer {
        status: f.status,
        location: f.location,
        set_cookies: f.set_cookies,
        body: String::from_utf8_lossy(&f.bytes).into_owned(),
    })
}

/// As [`send`], the body kept as bytes.
pub async fn fetch(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Fetched, RefreshFailure> {
    let resp = req.timeout(timeout).send().await.map_err(classify_error)?;
    let status = resp.status().as_u16();
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let location = header(reqwest::header::LOCATION);
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let set_cookies = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    // Read at most MAX_BODY: a huge page is not held in memory.
    let mut resp = resp;
    let mut bytes = Vec::new();
    while bytes.len() < MAX_BODY {
        match resp.chunk().await.map_err(classify_error)? {
            Some(c) => bytes.extend_from_slice(&c[..c.len().min(MAX_BODY - bytes.len())]),
            None => break,
        }
    }
    Ok(Fetched {
        status,
        location,
        content_type,
        set_cookies,
        bytes,
    })
}

fn classify_error(e: reqwest::Error) -> RefreshFailure {
    if e.is_timeout() {
        RefreshFailure::Timeout
    } else {
        RefreshFailure::Network
    }
}

/// What a site's answer says about a session, by its rules: blocked,
/// logged out (default: 401), slow down (429), or another error.
pub fn session_failure(site: &SiteConfig, a: &Answer) -> Option<RefreshFailure> {
    let loc = a.location.as_deref();
    if site.ban.matches(a.status, loc, &a.body) {
        Some(RefreshFailure::Blocked)
    } else if site.logout.matches(a.status, loc, &a.body)
        || (site.logout.is_empty() && a.status == 401)
    {
        Some(RefreshFailure::LoggedOut)
    } else if a.status == 429 {
        Some(RefreshFailure::RateLimited)
    } else if a.status >= 400 {
        Some(RefreshFailure::Other)
    } else {
        None
    }
}
