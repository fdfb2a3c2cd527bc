//! The operator's console of `credpool serve`, end to end: a real headless
//! Chromium (driven over WebDriver by a `chromedriver` the test starts)
//! signs in, finds the captcha ticket the simulated site's login opened,
//! reads the picture's answer from the site's test hook, types it, and
//! sees the credential come back to `active`; and HTTP-level checks of
//! escaping, CSRF, roles, cookies, headers and secrets on every page.

use crate::support::http::Client;
use crate::support::server::{Served, token};
use crate::support::webdriver::Browser;
use crate::support::{canary, initialised};
use base64::Engine as _;
use credpool::simulate::site::{CaptchaStyle, Flavour, SimSite, SiteSpec};
use serde_json::{Value, json};
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

const SITE: &str = "shop.sim";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `credpool serve` on a free loopback port with a quick lifecycle tick.
fn serve(dir: &Path) -> Served {
    Served::start(dir, &["--listen", "127.0.0.1:0", "--interval-ms", "200"])
}

/// One answer of the console.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    fn location(&self) -> String {
        self.header("location").concat()
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let at = self.body.find(marker).expect("a form with a CSRF field") + marker.len();
        self.body[at..at + self.body[at..].find('"').unwrap()].to_string()
    }
}

/// A person's browser, at the HTTP level: a cookie jar of one session.
struct Person {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Person {
    fn new(served: &Served) -> Person {
        Self::with(served, reqwest::Client::builder())
    }

    fn with(served: &Served, client: reqwest::ClientBuilder) -> Person {
        Person {
            rt: runtime(),
            http: client
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: served.url(""),
            cookies: Vec::new(),
        }
    }

    fn keep_cookies(&mut self, headers: &reqwest::header::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.into(), value.into()));
            }
        }
    }

    fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie.join("; "))
        };
        let (status, headers, body) = self.rt.block_on(async {
            let r = req.send().await.expect("the console answers");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().await.unwrap_or_default())
        });
        self.keep_cookies(&headers);
        Page {
            status,
            headers,
            body,
        }
    }

    fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req)
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        // A browser says where a POST comes from (the scheme too).
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .form(fields);
        self.send(req)
    }

    /// Signs in with `token`; the answer to the sign-in POST.
    fn sign_in(&mut self, token: &str) -> Page {
        let form = self.get("/console/sign-in");
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.csrf();
        let done = self.post("/console/sign-in", &[("csrf", &csrf), ("token", token)]);
        assert_eq!(done.status, 303, "{}", done.body);
        assert_eq!(done.location(), "/");
        done
    }
}

/// Adds credentials over the API as an operator.
fn add(served: &Served, operator: &str, body: &Value) {
    let a = served.client(operator).post("/v1/credentials", body);
    assert_eq!(a.status, 201, "{}", a.text());
}

#[test]
fn a_value_with_markup_shows_as_text() {
    let dir = initialised();
    let d = dir.path();
    std::fs::write(d.join("credpool.toml"), "").unwrap();
    let operator = token(d, "default", "operator", &[]);
    let served = serve(d);
    let evil = "<img src=x onerror=alert(1)>";
    add(
        &served,
        &operator,
        &json!({"site": "plain.test", "type": "account", "id": "evil-1", "username": evil,
                "tags": ["<b>bold"], "labels": [{"name": "note", "value": evil}],
                "user_agent": evil, "secrets": {"password": "pw"}}),
    );
    let mut p = Person::new(&served);
    p.sign_in(&operator);
    // The list shows the username as the policy masks it (its last
    // characters), as text; the credential's page shows the whole value
    // where the view has it whole (its label and user agent).
    let list = p.get("/console/sites/plain.test");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body.contains(r#"<td class="user">***(1)&gt;</td>"#),
        "the username is not shown as text:\n{}",
        list.body
    );
    let one = p.get("/console/credentials/evil-1");
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(
        one.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the value is not shown as text:\n{}",
        one.body
    );
    for (path, page) in [("list", &list), ("credential", &one)] {
        assert!(!page.body.contains("<img src=x"), "{path} has the markup");
        assert!(!page.body.contains("(1)>"), "{path} has the markup");
        assert!(
            !page.body.contains("<b>bold"),
            "{path} has the tag's markup"
        );
        assert!(page.body.contains("&lt;b&gt;bold"), "{path} lost the tag");
    }
}

/// A banned session credential: acquired by a crawler, reported blocked
/// (the policy bans at the first block here).
fn banned_credential(served: &Served, crawler: &str, operator: &str) -> String {
    add(
        served,
        operator,
        &json!({"site": "plain.test", "type": "session", "id": "s-1",
                "secrets": {"cookies": [{"name": "sid", "value": "c1"}]}}),
    );
    let mut c = served.client(crawler);
    let got = c.post("/v1/acquire", &json!({"site": "plain.test"})).json();
    let lease = got["lease"]["id"].as_str().expect("a lease").to_string();
    let eff = c
        .post(
            &format!("/v1/leases/{lease}/report"),
            &json!({"outcome": "blocked", "http_status": 403}),
        )
        .json();
    assert_eq!(eff["status"], "banned", "{eff}");
    "s-1".into()
}

fn status_of(client: &mut Client, id: &str) -> String {
    client.get(&format!("/v1/credentials/{id}")).json()["status"]
        .as_str()
        .unwrap_or("removed")
        .to_string()
}

#[test]
fn forms_without_the_sessions_csrf_token_are_refused_and_a_viewer_cannot_act() {
    let dir = initialised();
    let d = dir.path();
    std::fs::write(d.join("credpool.toml"), "[policy]\nban_after_blocks = 1\n").unwrap();
    let operator = token(d, "default", "operator", &[]);
    let viewer = token(d, "default", "viewer", &[]);
    let crawler = token(d, "default", "crawler", &[]);
    let served = serve(d);
    let id = banned_credential(&served, &crawler, &operator);
    let mut api = served.client(&operator);
    let unban = format!("/console/credentials/{id}/unban");

    let mut op = Person::new(&served);
    op.sign_in(&operator);
    let page = op.get(&format!("/console/credentials/{id}"));
    let csrf = page.csrf();
    // No token, a wrong one, another session's: refused, nothing done.
    let mut other = Person::new(&served);
    other.sign_in(&operator);
    let others = other.get("/").csrf();
    assert_ne!(others, csrf, "each session has its own token");
    for fields in [
        vec![],
        vec![("csrf", "0".repeat(64))],
        vec![("csrf", others.clone())],
    ] {
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = op.post(&unban, &f);
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("CSRF"), "{}", r.body);
        assert_eq!(status_of(&mut api, &id), "banned");
    }

    // A viewer sees no action, and one posted with its own valid token
    // is refused.
    let mut v = Person::new(&served);
    v.sign_in(&viewer);
    let page = v.get(&format!("/console/credentials/{id}"));
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/unban"), "a viewer is offered unban");
    let vcsrf = page.csrf();
    let r = v.post(&unban, &[("csrf", &vcsrf)]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("viewer"), "{}", r.body);
    assert_eq!(status_of(&mut api, &id), "banned");
    assert_eq!(
        v.get("/console/inbox").status,
        403,
        "the inbox is for operators"
    );

    // The operator's own token does it.
    let r = op.post(&unban, &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_ne!(status_of(&mut api, &id), "banned");

    // Removing asks first, then needs the confirmation and the token.
    let remove = format!("/console/credentials/{id}/remove");
    let confirm = op.get(&remove);
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains(r#"name="confirm" value="yes""#));
    assert_eq!(op.post(&remove, &[("csrf", &csrf)]).status, 400);
    assert_eq!(op.post(&remove, &[("confirm", "yes")]).status, 403);
    assert_ne!(status_of(&mut api, &id), "removed");
    let r = op.post(&remove, &[("csrf", &csrf), ("confirm", "yes")]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(api.get(&format!("/v1/credentials/{id}")).status, 404);
}

/// Every console page reachable by links from `/`.
fn crawl(p: &mut Person) -> Vec<(String, Page)> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from(["/".to_string()]);
    let mut pages = Vec::new();
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) || seen.len() > 200 {
            continue;
        }
        let page = p.get(&path);
        for part in page.body.split("href=\"").skip(1) {
            let link = part[..part.find('"').unwrap()].replace("&amp;", "&");
            if link.starts_with('/') && !seen.contains(&link) {
                queue.push_back(link);
            }
        }
        for part in page.body.split("src=\"").skip(1) {
            let link = part[..part.find('"').unwrap()].to_string();
            if link.starts_with('/') && !seen.contains(&link) {
                queue.push_back(link);
            }
        }
        pages.push((path, page));
    }
    pages
}

/// Whether `html` has an attribute like ` onclick=`.
fn has_inline_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        name > 0 && rest[name..].trim_start().starts_with('=')
    })
}

#[test]
fn no_page_shows_a_secret_every_page_has_the_headers_and_sign_out_ends_the_session() {
    let dir = initialised();
    let d = dir.path();
    std::fs::write(d.join("credpool.toml"), "").unwrap();
    let admin = token(d, "default", "admin", &[]);
    let viewer = token(d, "default", "viewer", &[]);
    let crawler = token(d, "default", "crawler", &[]);
    let served = serve(d);
    let secrets = [
        canary("pw"),
        canary("cookie"),
        canary("totp"),
        canary("token"),
        canary("header"),
    ];
    add(
        &served,
        &admin,
        &json!({"site": "plain.test", "type": "account", "id": "a-1", "username": "ann",
                "phone": "+15550001234", "tags": ["t1"],
                "secrets": {"password": secrets[0], "cookies": [{"name": "sid", "value": secrets[1]}],
                            "totp_seed": secrets[2], "access_token": secrets[3],
                            "headers": [{"name": "X-Key", "value": secrets[4]}]}}),
    );
    let mut p = Person::new(&served);
    let signed = p.sign_in(&admin);
    // The session cookie: HttpOnly, SameSite=Strict, no Secure over HTTP.
    let cookie = signed
        .header("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("credpool_console="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(!cookie.contains(&admin), "the token is not the cookie");

    let pages = crawl(&mut p);
    let paths: Vec<&str> = pages.iter().map(|(p, _)| p.as_str()).collect();
    for must in [
        "/",
        "/console/alerts",
        "/console/inbox",
        "/console/sites/plain.test",
        "/console/credentials/a-1",
        "/console/credentials/a-1/remove",
        "/console/static/console.js",
        "/console/static/console.css",
    ] {
        assert!(paths.contains(&must), "{must} not reached: {paths:?}");
    }
    for (path, page) in &pages {
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        for s in &secrets {
            assert!(!page.body.contains(s.as_str()), "{path} shows a secret");
        }
        let csp = page.header("content-security-policy").concat();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp:?}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(page.header("x-frame-options"), ["DENY"], "{path}");
        assert_eq!(page.header("x-content-type-options"), ["nosniff"], "{path}");
        assert_eq!(page.header("referrer-policy"), ["no-referrer"], "{path}");
        if page
            .header("content-type")
            .concat()
            .starts_with("text/html")
        {
            assert!(
                !page.body.contains("<script>"),
                "{path} has an inline script"
            );
            assert!(
                !has_inline_handler(&page.body),
                "{path} has an inline handler"
            );
        }
    }
    // The phone is masked at the sensitive level.
    let cred = &pages
        .iter()
        .find(|(p, _)| p == "/console/credentials/a-1")
        .unwrap()
        .1;
    assert!(!cred.body.contains("+15550001234"), "the phone in clear");

    // Signing out ends the session on the server: the old cookie is dead.
    let old = p.cookies.clone();
    let csrf = p.get("/").csrf();
    let out = p.post("/console/sign-out", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    p.cookies = old;
    let again = p.get("/");
    assert_eq!(again.status, 303);
    assert_eq!(again.location(), "/console/sign-in");
    assert_eq!(p.get("/console/status?ids=a-1").status, 401);
    // A crawler's token does not sign in.
    let mut c = Person::new(&served);
    let form = c.get("/console/sign-in");
    let r = c.post(
        "/console/sign-in",
        &[("csrf", &form.csrf()), ("token", &crawler)],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // Nor does a sign-in form posted without its own CSRF token.
    let r = c.post("/console/sign-in", &[("token", &admin)]);
    assert_eq!(r.status, 403, "{}", r.body);
    // A revoked token's session ends.
    let mut q = Person::new(&served);
    q.sign_in(&viewer);
    assert_eq!(q.get("/").status, 200);
    let id = served.client(&admin).get("/v1/tokens").json();
    let vid = id
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "viewer")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        served
            .client(&admin)
            .delete(&format!("/v1/tokens/{vid}"))
            .status,
        200
    );
    assert_eq!(q.get("/").status, 303, "a revoked token's session lives on");
}

#[test]
fn over_https_the_session_cookie_is_secure() {
    let dir = initialised();
    let d = dir.path();
    std::fs::write(d.join("credpool.toml"), "").unwrap();
    let operator = token(d, "default", "operator", &[]);
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (d.join("server.crt"), d.join("server.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let served = Served::start(
        d,
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(served.scheme, "https");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .https_only(true);
    let mut p = Person::with(&served, client);
    let signed = p.sign_in(&operator);
    let cookie = signed
        .header("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("credpool_console="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert_eq!(p.get("/").status, 200);
}

/// Where the browser test saves its screenshots: `target/console-screenshots`,
/// or README's `docs/` with `CREDPOOL_SCREENSHOTS=docs` (a directory relative
/// to the repository), so an ordinary test run leaves the tree unchanged.
fn docs() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CREDPOOL_SCREENSHOTS") {
        Some(dir) => root.join(dir),
        None => root.join("target/console-screenshots"),
    }
}

#[test]
fn in_a_real_browser_an_operator_answers_the_captcha_and_the_credential_comes_back() {
    let rt = runtime();
    let site = rt
        .block_on(SimSite::start(SiteSpec {
            name: SITE.into(),
            flavour: Flavour::Form,
            accounts: 3,
            totp_share: 0.0,
            sms_share: 0.0,
            ban_share: 0.0,
            captcha_rate: 0.0,
            defence_change_at: None,
            captcha_style: CaptchaStyle::Text,
            ..SiteSpec::default()
        }))
        .expect("the simulated site starts");
    let dir = initialised();
    let d = dir.path();
    // A person may take minutes: the ticket waits five.
    let config = site
        .sites_toml()
        .replace("ticket_timeout = \"30s\"", "ticket_timeout = \"300s\"");
    std::fs::write(d.join("credpool.toml"), config).unwrap();
    let operator = token(d, "default", "operator", &[]);
    let served = serve(d);
    // Two accounts log in on their own; the third meets a captcha first.
    let accounts = site.accounts().to_vec();
    assert!(site.raise_captcha(&accounts[0].username));
    for a in &accounts {
        add(
            &served,
            &operator,
            &json!({"site": SITE, "type": "account", "id": a.credential_id(SITE),
                    "username": a.username,
                    "secrets": {"password": a.password.as_str()}}),
        );
    }
    let stuck = accounts[0].credential_id(SITE);

    let b = Browser::start();
    b.goto(&served.url("/"));
    assert!(b.url().ends_with("/console/sign-in"), "{}", b.url());
    b.type_in(&b.find("#token"), &operator);
    b.click(&b.find("#sign-in"));
    b.wait_for(20, false, "the overview after signing in", |b| {
        b.url().ends_with('/')
    });

    // The overview of the simulated site, once the logins have run: two
    // active, one held at the captcha.
    let site_link = format!(r#"a[href="/console/sites/{SITE}"]"#);
    let count = |b: &Browser, status: &str| {
        let css = format!(r#"[data-site="{SITE}"] [data-status-count="{status}"]"#);
        b.find_all(&css)
            .first()
            .map(|c| b.text(c))
            .unwrap_or_default()
    };
    b.wait_for(60, true, "the logins", |b| {
        count(b, "active") == "2" && count(b, "challenged") == "1"
    });
    b.screenshot(&docs().join("console-overview.png"));
    b.click(&b.find(&site_link));
    let status_cell = format!(r#"[data-status-of="{stuck}"]"#);
    assert_ne!(b.text(&b.find(&status_cell)), "active");

    // The inbox: the ticket, with the picture the site showed at login.
    b.goto(&served.url("/console/inbox"));
    b.wait_for(60, true, "the captcha ticket", |b| {
        !b.find_all(&format!(
            r#"section.ticket[data-credential="{stuck}"] img.captcha"#
        ))
        .is_empty()
    });
    let ticket = b.find(&format!(r#"section.ticket[data-credential="{stuck}"]"#));
    let ticket_id = b
        .call(
            "GET",
            &format!("/element/{ticket}/attribute/data-ticket"),
            None,
        )
        .as_str()
        .expect("the ticket's id")
        .to_string();
    assert!(
        b.text(&ticket).contains("captcha-image"),
        "{}",
        b.text(&ticket)
    );
    // The browser shows it, and fetches its bytes as the page has them.
    let shown = b.run_async(
        r#"const done = arguments[arguments.length - 1];
           const img = document.querySelector('section.ticket img.captcha');
           fetch(img.src, {credentials: 'same-origin'})
             .then(r => r.arrayBuffer())
             .then(buf => {
               let s = ''; for (const x of new Uint8Array(buf)) s += String.fromCharCode(x);
               done({width: img.naturalWidth, bytes: btoa(s)});
             })
             .catch(e => done({error: String(e)}));"#,
        json!([]),
    );
    assert!(
        shown["width"].as_u64().unwrap_or(0) > 0,
        "the image is not shown: {shown}"
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(shown["bytes"].as_str().expect("the image's bytes"))
        .unwrap();
    let answer = site
        .answer_of_image(&bytes)
        .expect("the picture is the pending captcha's");
    let input = b.find(&format!(
        r#"section.ticket[data-credential="{stuck}"] input[name="answer"]"#
    ));
    b.screenshot(&docs().join("console-inbox.png"));
    b.type_in(&input, &answer);
    b.click(&b.find(&format!(
        r#"section.ticket[data-credential="{stuck}"] button[type="submit"]"#
    )));

    // The credential's page: its status comes back to active without a
    // reload (the page's script polls).
    b.wait_for(20, false, "the credential's page after answering", |b| {
        b.url().contains("answered=")
    });
    let notice = b.find("#answered");
    b.wait_for(60, false, "the credential to come back", |b| {
        b.text(&b.find(&status_cell)) == "active"
    });
    assert!(!b.text(&notice).is_empty(), "the page was reloaded");
    assert_eq!(site.truth().accounts[0].captchas, 1);
    // Its history tells the story: the ticket, its answer, the status.
    b.call("POST", "/refresh", Some(json!({})));
    let text = b.call(
        "POST",
        "/execute/sync",
        Some(json!({"script": "return document.body.innerText", "args": []})),
    );
    let text = text.as_str().unwrap_or_default();
    for event in [
        "ticket.opened",
        "ticket.closed",
        "closure=answered",
        "cred.status",
        "to=active",
    ] {
        assert!(text.contains(event), "no {event} in the history:\n{text}");
    }

    // The ticket closed: its picture is gone from the inbox and the store.
    b.goto(&served.url("/console/inbox"));
    assert!(b.find_all("section.ticket").is_empty());
    let gone = b.run_async(
        r#"const done = arguments[arguments.length - 1];
           fetch('/console/inbox/' + encodeURIComponent(arguments[0]) + '/image')
             .then(r => done(r.status)).catch(e => done(String(e)));"#,
        json!([ticket_id]),
    );
    assert_eq!(gone, 404);
    drop(b);
    let (status, log) = served.stop();
    assert!(status.success(), "{log}");
    let store = credpool::backend::RedbBackend::open(&d.join("data").join("credpool.redb"))
        .expect("the store opens");
    let key = credpool::layout::captcha_key("default", &stuck);
    assert_eq!(
        credpool::backend::Backend::get(&store, &key).unwrap(),
        None,
        "the sealed picture outlived its ticket"
    );
}
