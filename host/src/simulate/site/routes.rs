//! The site's HTTP: a hyper 1 HTTP/1.1 server and its routes.
//!
//! - `GET /item/{n}` with `Cookie: sid=…` or `Authorization: Bearer …`,
//!   checked in this order: unknown or expired session 401; banned 403
//!   `account banned`; blocked 403 `access denied` (abuse); defence-change
//!   block 403; captcha pending 200 with the captcha form; over rate 429;
//!   over budget 429; else 200 `<html>item n</html>`.
//! - `POST /login` (`username`, `password`): 302 to `/home` with a `sid`
//!   cookie, or the page of the first second step (captcha if one is
//!   pending, then TOTP or SMS) with a `login` cookie; `POST /login/2fa`
//!   (`otp`), `POST /login/sms` (`code`), `POST /captcha` (`answer`) go on.
//! - `GET /home` with a live `sid`: 200 and a new `sid` (the old one lives
//!   until its own expiry), or the captcha form while one is pending;
//!   otherwise 302 to `/login`.
//! - `POST /oauth/token`, refresh grant: new access and refresh tokens; the
//!   old refresh token works for `refresh_grace` more.
//!
//! Every answer waits its seeded page time. Nothing here logs: requests
//! carry passwords, cookies and tokens.

use super::rules::{Account, Ms, Verdict};
use super::slider;
use super::{
    BANNED_MARKER, CLIENT_ID, CaptchaStyle, DENIED_MARKER, Flavour, Flight, Grant, Key,
    PendingLogin, Shared, Step,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, header};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use zeroize::Zeroizing;

const CAPTCHA_PAGE: &str = r#"<html><form id="captcha" action="/captcha" method="post"><img src="/captcha.png" alt="type the letters you see"><input name="answer"></form></html>"#;
const SLIDER_PAGE: &str = r#"<html><form id="captcha" action="/captcha/slider" method="post"><p class="hint">Drag the piece into the gap</p><img id="slider-bg" src="/captcha.png"><input name="track" type="hidden"></form></html>"#;
const SMS_ON_REQUEST_PAGE: &str = r#"<html><form action="/login/sms" method="post">Verify it is you: <button formaction="/login/sms/send">send me a code</button>; once we sent a code to your phone, enter it <input name="code"></form></html>"#;
const TOTP_PAGE: &str = r#"<html><form action="/login/2fa" method="post">Please enter your authenticator code <input name="otp"></form></html>"#;
const SMS_PAGE: &str = r#"<html><form action="/login/sms" method="post">Verify it is you: we sent a code to your phone <input name="code"></form></html>"#;
const LOGIN_PAGE: &str = r#"<html><form action="/login" method="post"><input name="username"><input name="password" type="password"></form></html>"#;

/// Bodies of POSTs are read up to this size.
const MAX_FORM: usize = 64 * 1024;

type Answer = Response<Full<Bytes>>;

/// Accepts connections until `stop` changes (or its sender is dropped).
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                // Out of descriptors and the like: breathe, go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Answer {
    let delay = shared.latency();
    let (parts, body) = req.into_parts();
    let form = if parts.method == Method::POST {
        match Limited::new(body, MAX_FORM).collect().await {
            Ok(b) => Form::parse(&b.to_bytes()),
            Err(_) => return page(413, "<html>too large</html>"),
        }
    } else {
        Form::default()
    };
    // Decided on arrival, answered after the page time; a crawl request
    // is in flight for its account until then.
    let (answer, flight) = route(shared, &parts, &form);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    drop(flight);
    answer
}

fn route<'a>(s: &'a Shared, parts: &Parts, form: &Form) -> (Answer, Option<Flight<'a>>) {
    let path = parts.uri.path();
    if parts.method == Method::GET
        && let Some(item) = path.strip_prefix("/item/")
    {
        return crawl(s, parts, item);
    }
    let answer = match (&parts.method, path) {
        (&Method::GET, "/home") => home(s, parts),
        (&Method::GET, "/login") => page(200, LOGIN_PAGE),
        (&Method::POST, "/login") => login(s, form),
        (&Method::POST, "/login/2fa") => login_step(s, parts, form, Step::Totp),
        (&Method::POST, "/login/sms") => login_step(s, parts, form, Step::Sms),
        (&Method::POST, "/login/sms/send") => send_sms(s, parts),
        (&Method::POST, "/captcha") if s.spec.captcha_style == CaptchaStyle::Text => {
            captcha(s, parts, form)
        }
        (&Method::POST, "/captcha/slider") if s.spec.captcha_style == CaptchaStyle::Slider => {
            captcha(s, parts, form)
        }
        (&Method::GET, "/captcha.png") => captcha_image(s, parts),
        (&Method::POST, "/oauth/token") => token(s, parts, form),
        _ => page(404, "<html>not found</html>"),
    };
    (answer, None)
}

// ------------------------------------------------------------ answers

fn respond(status: u16, headers: &[(header::HeaderName, &str)], body: impl Into<Bytes>) -> Answer {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(k, *v);
    }
    r.body(Full::new(body.into()))
        .expect("static status and headers")
}

fn page(status: u16, body: &str) -> Answer {
    html(status, &[], body)
}

fn html(status: u16, headers: &[(header::HeaderName, &str)], body: &str) -> Answer {
    let mut h = vec![(header::CONTENT_TYPE, "text/html; charset=utf-8")];
    h.extend_from_slice(headers);
    respond(status, &h, body.to_string())
}

fn json(status: u16, body: String) -> Answer {
    respond(
        status,
        &[
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

fn banned() -> Answer {
    page(
        403,
        &format!("<html>{BANNED_MARKER}: this account broke our terms</html>"),
    )
}

fn denied() -> Answer {
    page(403, &format!("<html>{DENIED_MARKER}</html>"))
}

fn unauthorized() -> Answer {
    html(
        401,
        &[(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        "<html>please sign in</html>",
    )
}

fn to_login() -> Answer {
    html(302, &[(header::LOCATION, "/login")], "")
}

fn captcha_page(s: &Shared) -> &'static str {
    match s.spec.captcha_style {
        CaptchaStyle::Text => CAPTCHA_PAGE,
        CaptchaStyle::Slider => SLIDER_PAGE,
    }
}

fn verdict(s: &Shared, v: Verdict, item: &str) -> Answer {
    match v {
        Verdict::Ok => page(200, &format!("<html>item {item}</html>")),
        Verdict::Banned => banned(),
        Verdict::Denied => denied(),
        Verdict::Captcha => page(200, captcha_page(s)),
        Verdict::RateLimited(secs) | Verdict::OverBudget(secs) => html(
            429,
            &[(header::RETRY_AFTER, &secs.to_string())],
            "<html>too many requests</html>",
        ),
    }
}

fn session_cookie(s: &Shared, sid: &str) -> String {
    format!(
        "sid={sid}; Path=/; Max-Age={}; HttpOnly",
        s.ttl().div_ceil(1000)
    )
}

// ------------------------------------------------------------ requests

/// A request's form fields (`application/x-www-form-urlencoded`); values
/// may be passwords or codes.
#[derive(Default)]
struct Form(Vec<(String, Zeroizing<String>)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(
            body.split(|&b| b == b'&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let mut it = kv.splitn(2, |&b| b == b'=');
                    let k = decode(it.next().unwrap_or_default());
                    let v = decode(it.next().unwrap_or_default());
                    (k.to_string(), v)
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Percent-decoding with `+` as a space.
fn decode(raw: &[u8]) -> Zeroizing<String> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}

/// The value of cookie `name` in the request.
fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The session's or token's grant, live or not.
fn grant(s: &Shared, parts: &Parts) -> Option<Grant> {
    let key = bearer(parts).or_else(|| cookie(parts, "sid"))?;
    s.sessions.lock().unwrap().get(key).copied()
}

fn lock(s: &Shared, i: usize) -> std::sync::MutexGuard<'_, Account> {
    s.accounts[i].lock().unwrap()
}

// ------------------------------------------------------------ routes

fn crawl<'a>(s: &'a Shared, parts: &Parts, item: &str) -> (Answer, Option<Flight<'a>>) {
    if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
        return (page(404, "<html>not found</html>"), None);
    }
    let now = s.now();
    let Some(g) = grant(s, parts) else {
        s.unknown_sessions.fetch_add(1, Ordering::Relaxed);
        return (unauthorized(), None);
    };
    let flight = Flight::start(s, g.account);
    let mut a = lock(s, g.account);
    if g.expires <= now {
        a.served.unauthorized += 1;
        return (unauthorized(), Some(flight));
    }
    let v = a.crawl(&s.spec, now);
    s.note_ban(&mut a);
    (verdict(s, v, item), Some(flight))
}

fn home(s: &Shared, parts: &Parts) -> Answer {
    let now = s.now();
    let Some(g) = grant(s, parts).filter(|g| g.expires > now) else {
        return to_login();
    };
    let mut a = lock(s, g.account);
    if a.ban(now).is_some() {
        return banned();
    }
    if a.captcha().is_some() {
        return page(200, captcha_page(s));
    }
    // A logged-in visit renders even during a block: the block is on the
    // crawl pages, and keeping a session alive is what a person does.
    a.keepalives += 1;
    let sid = s.issue_session(g.account, &mut a, now);
    drop(a);
    html(
        200,
        &[(header::SET_COOKIE, &session_cookie(s, &sid))],
        "<html>welcome back</html>",
    )
}

fn login(s: &Shared, form: &Form) -> Answer {
    let invalid = || page(200, "<html>invalid username or password</html>");
    if s.spec.flavour != Flavour::Form {
        return page(404, "<html>not found</html>");
    }
    let Some(&i) = s.by_username.get(form.get("username")) else {
        return invalid();
    };
    let now = s.now();
    let mut a = lock(s, i);
    a.login_attempts += 1;
    if form.get("password") != s.public[i].password.as_str() {
        return invalid();
    }
    if let Some(v) = a.gate(&s.spec, now) {
        s.note_ban(&mut a);
        // Banned or Denied: the same 403 pages as a crawl gets.
        return verdict(s, v, "");
    }
    let mut steps = VecDeque::new();
    if a.captcha().is_some() {
        steps.push_back(Step::Captcha);
    }
    if s.public[i].totp_seed.is_some() {
        steps.push_back(Step::Totp);
    }
    if s.public[i].sms {
        steps.push_back(Step::Sms);
    }
    let id = Key::new(&s.login_id(i, a.login_attempts));
    let pending = PendingLogin {
        account: i,
        steps,
        expires: now + super::rules::ms(super::PENDING_LOGIN_TTL),
    };
    next_step(s, &mut a, id, pending, now)
}

/// The page of the login's next step, or its session when none is left.
fn next_step(s: &Shared, a: &mut Account, id: Key, pending: PendingLogin, now: Ms) -> Answer {
    let Some(&step) = pending.steps.front() else {
        a.logins += 1;
        let sid = s.issue_session(pending.account, a, now);
        s.logins.lock().unwrap().remove(id.0.as_str());
        let session = session_cookie(s, &sid);
        return html(
            302,
            &[
                (header::LOCATION, "/home"),
                (header::SET_COOKIE, &session),
                (header::SET_COOKIE, "login=; Path=/; Max-Age=0"),
            ],
            "",
        );
    };
    if step == Step::Sms && !s.spec.sms_on_request {
        a.send_sms();
    }
    let cookie = Zeroizing::new(format!("login={}; Path=/; HttpOnly", id.0));
    let mut logins = s.logins.lock().unwrap();
    logins.retain(|_, p| p.expires > now);
    logins.insert(id, pending);
    drop(logins);
    html(200, &[(header::SET_COOKIE, &cookie)], step_page(s, step))
}

fn step_page(s: &Shared, step: Step) -> &'static str {
    match step {
        Step::Captcha => captcha_page(s),
        Step::Totp => TOTP_PAGE,
        Step::Sms if s.spec.sms_on_request => SMS_ON_REQUEST_PAGE,
        Step::Sms => SMS_PAGE,
    }
}

/// The pending login of the request's `login` cookie, taken out of the
/// book (put back by [`next_step`] unless finished).
fn take_login(s: &Shared, parts: &Parts, now: Ms) -> Option<(Key, PendingLogin)> {
    let id = Key::new(cookie(parts, "login")?);
    let p = s.logins.lock().unwrap().remove(id.0.as_str())?;
    (p.expires > now).then_some((id, p))
}

fn login_step(s: &Shared, parts: &Parts, form: &Form, step: Step) -> Answer {
    let now = s.now();
    let Some((id, mut pending)) = take_login(s, parts, now) else {
        return page(200, "<html>your sign-in expired, please start again</html>");
    };
    let i = pending.account;
    let mut a = lock(s, i);
    if let Some(v) = a.gate(&s.spec, now) {
        s.note_ban(&mut a);
        // Banned or Denied: the same 403 pages as a crawl gets.
        return verdict(s, v, "");
    }
    let current = *pending.steps.front().expect("a pending login has a step");
    let mut why = None;
    let right = current == step
        && match step {
            Step::Captcha => solve(s, &mut a, form).map_err(|w| why = w).is_ok(),
            Step::Totp => totp_ok(s, i, form.get("otp"), now),
            Step::Sms => a
                .sms_code()
                .is_some_and(|c| c.as_str() == form.get("code").trim()),
        };
    if !right {
        // The same step again, so the code can be given again.
        s.logins.lock().unwrap().insert(id, pending);
        return match current {
            Step::Captcha => page(200, &refused(s, why)),
            _ => page(200, step_page(s, current)),
        };
    }
    pending.steps.pop_front();
    next_step(s, &mut a, id, pending, now)
}

/// RFC 6238 at the site's time, one 30 s step of slack either way.
fn totp_ok(s: &Shared, i: usize, code: &str, now: Ms) -> bool {
    let Some(seed) = &s.public[i].totp_seed else {
        return false;
    };
    let Ok(key) = crate::lifecycle::totp::decode_base32(seed) else {
        return false;
    };
    let secs = (s.epoch_ms(now).max(0) / 1000) as u64;
    [secs.saturating_sub(30), secs, secs + 30]
        .iter()
        .any(|&t| crate::lifecycle::totp::totp(&key, t, 6).as_str() == code.trim())
}

fn captcha(s: &Shared, parts: &Parts, form: &Form) -> Answer {
    if cookie(parts, "login").is_some() && bearer(parts).is_none() {
        return login_step(s, parts, form, Step::Captcha);
    }
    let now = s.now();
    let Some(g) = grant(s, parts).filter(|g| g.expires > now) else {
        return unauthorized();
    };
    let mut a = lock(s, g.account);
    if a.captcha().is_none() {
        return page(200, "<html>nothing to solve</html>");
    }
    match solve(s, &mut a, form) {
        Ok(()) => page(200, "<html>thank you, go on</html>"),
        Err(why) => page(200, &refused(s, why)),
    }
}

/// The captcha page again, saying why a slider's track was refused.
fn refused(s: &Shared, why: Option<slider::Rejection>) -> String {
    match why {
        Some(r) => captcha_page(s).replace(
            "</form>",
            &format!(r#"<p class="error" data-rejected="{r:?}">try again</p></form>"#),
        ),
        None => captcha_page(s).to_string(),
    }
}

/// Solves the account's pending captcha with the form: the text typed, or
/// a drag track onto the slider's gap (`Err(Some(why))` when refused).
fn solve(s: &Shared, a: &mut Account, form: &Form) -> Result<(), Option<slider::Rejection>> {
    let ok = match s.spec.captcha_style {
        CaptchaStyle::Text => a.solve_captcha(form.get("answer")),
        CaptchaStyle::Slider => {
            let Some(drawn) = a.captcha().cloned() else {
                return Err(None);
            };
            slider::parse_track(form.get("track"))
                .and_then(|t| slider::check(&t, slider::gap_of(&drawn)))
                .map_err(Some)?;
            a.solve_captcha(&drawn)
        }
    };
    if ok { Ok(()) } else { Err(None) }
}

/// The picture of the captcha pending for the request's login or session.
fn captcha_image(s: &Shared, parts: &Parts) -> Answer {
    let now = s.now();
    let account = match cookie(parts, "login") {
        Some(id) => s
            .logins
            .lock()
            .unwrap()
            .get(id)
            .filter(|p| p.expires > now)
            .map(|p| p.account),
        None => grant(s, parts)
            .filter(|g| g.expires > now)
            .map(|g| g.account),
    };
    let Some(drawn) = account.and_then(|i| lock(s, i).captcha().cloned()) else {
        return page(404, "<html>no captcha</html>");
    };
    respond(
        200,
        &[(header::CONTENT_TYPE, slider::IMAGE_TYPE)],
        slider::image(&drawn),
    )
}

/// Sends the code of a login waiting at its SMS step.
fn send_sms(s: &Shared, parts: &Parts) -> Answer {
    let now = s.now();
    let Some((id, pending)) = take_login(s, parts, now) else {
        return page(200, "<html>your sign-in expired, please start again</html>");
    };
    let at_sms = pending.steps.front() == Some(&Step::Sms);
    if at_sms {
        let mut a = lock(s, pending.account);
        a.send_sms();
    }
    s.logins.lock().unwrap().insert(id, pending);
    if at_sms {
        page(200, "<html>code sent</html>")
    } else {
        page(409, "<html>no code to send</html>")
    }
}

/// The client id of a token request: HTTP Basic, or the form's.
fn client_id(parts: &Parts, form: &Form) -> Option<String> {
    use base64::Engine as _;
    let basic = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| up.split_once(':').map(|(u, _)| u.to_string()));
    basic.or_else(|| Some(form.get("client_id").to_string()).filter(|c| !c.is_empty()))
}

fn token(s: &Shared, parts: &Parts, form: &Form) -> Answer {
    let error = |status, e: &str| json(status, format!(r#"{{"error":"{e}"}}"#));
    if s.spec.flavour != Flavour::OAuth {
        return page(404, "<html>not found</html>");
    }
    if form.get("grant_type") != "refresh_token" {
        return error(400, "unsupported_grant_type");
    }
    if client_id(parts, form).as_deref() != Some(CLIENT_ID) {
        return error(401, "invalid_client");
    }
    let now = s.now();
    let grace = super::rules::ms(s.spec.refresh_grace);
    let used = form.get("refresh_token");
    let found = s.refresh_tokens.lock().unwrap().get(used).copied();
    let Some(g) = found.filter(|g| g.retired.is_none_or(|r| now < r + grace)) else {
        return error(400, "invalid_grant");
    };
    let mut a = lock(s, g.account);
    if a.ban(now).is_some() {
        return error(400, "invalid_grant");
    }
    a.token_grants += 1;
    let (access, refresh, _) = s.issue_tokens(g.account, &mut a, now);
    drop(a);
    if let Some(old) = s.refresh_tokens.lock().unwrap().get_mut(used) {
        old.retired.get_or_insert(now);
    }
    json(
        200,
        format!(
            r#"{{"access_token":"{}","token_type":"Bearer","expires_in":{},"refresh_token":"{}"}}"#,
            access.as_str(),
            s.ttl().div_ceil(1000),
            refresh.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_their_markers() {
        use super::super::{CAPTCHA_MARKER, SMS_MARKER, TOTP_MARKER};
        assert!(CAPTCHA_PAGE.contains(CAPTCHA_MARKER));
        assert!(TOTP_PAGE.contains(TOTP_MARKER));
        assert!(SMS_PAGE.contains(SMS_MARKER));
        assert!(SLIDER_PAGE.contains(CAPTCHA_MARKER));
        assert!(SMS_ON_REQUEST_PAGE.contains(SMS_MARKER));
        for page in [
            CAPTCHA_PAGE,
            SLIDER_PAGE,
            TOTP_PAGE,
            SMS_PAGE,
            SMS_ON_REQUEST_PAGE,
            LOGIN_PAGE,
        ] {
            let markers = [CAPTCHA_MARKER, TOTP_MARKER, SMS_MARKER, BANNED_MARKER];
            assert_eq!(
                markers.iter().filter(|m| page.contains(*m)).count(),
                usize::from(page != LOGIN_PAGE)
            );
        }
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let f = Form::parse(b"username=user0001&password=a%2Bb+c%3D&x=%zz&empty=");
        assert_eq!(f.get("username"), "user0001");
        assert_eq!(f.get("password"), "a+b c=");
        assert_eq!(f.get("x"), "%zz");
        assert_eq!(f.get("empty"), "");
        assert_eq!(f.get("missing"), "");
        assert_eq!(decode(b"%4").as_str(), "%4");
        assert_eq!(decode(b"%41").as_str(), "A");
    }
}
