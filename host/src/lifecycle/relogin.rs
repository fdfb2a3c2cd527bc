//! Logging in again: a form recipe (POST the login form, recognise
//! success, a ban, or a challenge; answer a captcha with the configured
//! solver, given the image and instruction the recipe locates (`captcha`),
//! a slider by a drag track (`slider`); have a code sent (`send_url`);
//! otherwise hand back `challenged(kind)` and keep the login's
//! context for the resumed login: a 2FA step too, whose ticket the host
//! answers itself from the TOTP seed, see `Refresher::auto_answer`),
//! or an external command (secrets as JSON on stdin, never argv or env;
//! cookies and tokens as JSON on stdout; killed at its time limit).

use super::Inner;
use super::captcha::{self, Page, Solution};
use super::cookies::{Jar, MergeSummary};
use super::http::{self, Answer};
use super::sites::{ChallengeRule, LoginRecipe, SiteConfig};
use super::totp;
use crate::bindings::refresh::{ChallengeKind, RefreshFailure, RefreshOutcome, RefreshRequest};
use crate::secrets::Secrets;
use std::time::Duration;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A login stopped at a challenge, kept in memory for the resumed login.
pub(crate) struct Pending {
    pub(crate) ticket_id: Option<String>,
    /// Contexts older than [`PENDING_TTL`] are dropped.
    created: std::time::Instant,
    jar: Jar,
    rule: usize,
}

/// Captchas the solver may try in one login; then a person is asked.
const MAX_SOLVER_TRIES: usize = 2;

/// A stopped login older than this cannot be resumed (the site's own
/// challenge would have expired); a resumed login then starts over.
const PENDING_TTL: Duration = Duration::from_secs(24 * 3600);

fn failed(f: RefreshFailure, s: Option<u16>) -> RefreshOutcome {
    RefreshOutcome::Failed((f, s))
}

pub(crate) async fn relogin(
    inner: &Inner,
    site_name: &str,
    site: &SiteConfig,
    req: &RefreshRequest,
) -> RefreshOutcome {
    let id = req.credential_id.as_str();
    let secrets = match inner.vault.get_secrets(site_name, id) {
        Ok(Some(s)) => s,
        Ok(None) => return failed(RefreshFailure::Misconfigured, None),
        Err(_) => return failed(RefreshFailure::Other, None),
    };
    let answer = match &req.ticket_id {
        Some(t) => {
            if inner.closed_tickets.lock().unwrap().contains(t) {
                return failed(RefreshFailure::ChallengeTimedOut, None);
            }
            match inner.answers.take(t) {
                Some(a) => Some(a),
                None => return failed(RefreshFailure::Other, None),
            }
        }
        None => None,
    };
    if let Some(cmd) = &site.login_command {
        return command_login(inner, site_name, site, id, cmd, secrets, answer).await;
    }
    let Some(recipe) = &site.login else {
        return failed(RefreshFailure::Misconfigured, None);
    };
    form_login(inner, site_name, site, recipe, req, secrets, answer).await
}

fn merge(jar: &mut Jar, set_cookies: &[String], url: &reqwest::Url, now: i64) {
    let mut sum = MergeSummary::default();
    for h in set_cookies {
        jar.set_cookie(
            h,
            url.host_str().unwrap_or_default(),
            url.path(),
            url.scheme() == "https",
            now,
            &mut sum,
        );
    }
    jar.evict_expired(now);
}

fn succeeded(recipe: &LoginRecipe, a: &Answer, jar: &Jar) -> bool {
    let s = &recipe.success;
    let any_rule =
        s.cookie.is_some() || s.status.is_some() || s.redirect_to.is_some() || s.body.is_some();
    if !any_rule {
        return a.status < 400 && !a.set_cookies.is_empty();
    }
    s.cookie.as_ref().is_none_or(|c| jar.has(c))
        && s.status.is_none_or(|st| st == a.status)
        && s.redirect_to.as_ref().is_none_or(|r| {
            a.location
                .as_deref()
                .is_some_and(|l| l.contains(r.as_str()))
        })
        && s.body.as_ref().is_none_or(|b| a.body.contains(b.as_str()))
}

async fn post(
    inner: &Inner,
    site: &SiteConfig,
    url: &str,
    form: &[(&str, &str)],
    jar: &mut Jar,
) -> Result<Answer, RefreshOutcome> {
    let url = reqwest::Url::parse(url).map_err(|_| failed(RefreshFailure::Misconfigured, None))?;
    let now = inner.now_ms();
    let req = with_cookies(inner.client.post(url.clone()).form(form), jar, &url, now);
    let a = http::send(req, site.request_timeout())
        .await
        .map_err(|f| failed(f, None))?;
    merge(jar, &a.set_cookies, &url, now);
    Ok(a)
}

/// GETs `url` with the login's cookies (a captcha image); `None` when the
/// request fails.
pub(super) async fn get(
    inner: &Inner,
    site: &SiteConfig,
    url: &reqwest::Url,
    jar: &mut Jar,
) -> Option<http::Fetched> {
    let now = inner.now_ms();
    let req = with_cookies(inner.client.get(url.clone()), jar, url, now);
    let f = http::fetch(req, site.request_timeout()).await.ok()?;
    merge(jar, &f.set_cookies, url, now);
    Some(f)
}

/// `req` with the login's cookies for `url`, if it has any.
fn with_cookies(
    req: reqwest::RequestBuilder,
    jar: &Jar,
    url: &reqwest::Url,
    now: i64,
) -> reqwest::RequestBuilder {
    match jar.header_for(
        url.host_str().unwrap_or_default(),
        url.path(),
        url.scheme() == "https",
        now,
    ) {
        Some(c) => req.header(reqwest::header::COOKIE, c),
        None => req,
    }
}

fn is_captcha(k: ChallengeKind) -> bool {
    matches!(
        k,
        ChallengeKind::CaptchaImage | ChallengeKind::CaptchaSlider | ChallengeKind::CaptchaClick
    )
}

async fn form_login(
    inner: &Inner,
    site_name: &str,
    site: &SiteConfig,
    recipe: &LoginRecipe,
    req: &RefreshRequest,
    mut secrets: Secrets,
    mut answer: Option<Zeroizing<String>>,
) -> RefreshOutcome {
    let id = req.credential_id.as_str();
    let resumed = match &req.ticket_id {
        Some(_) => inner
            .pending
            .lock()
            .unwrap()
            .remove(id)
            .filter(|p| p.created.elapsed() < PENDING_TTL),
        None => None,
    };
    // The page that showed the current challenge (not kept across a
    // ticket: a person answers from what the ticket shows).
    let mut page: Option<Page> = None;
    // Either resume at the challenge the ticket was for, or start over.
    let (mut jar, mut rule_ix): (Jar, usize) = match resumed {
        Some(p) => (p.jar, p.rule),
        None => {
            let mut jar = Jar::default();
            let user = secrets.username.clone().unwrap_or_default();
            let pass = Zeroizing::new(secrets.password.clone().unwrap_or_default());
            let mut form: Vec<(&str, &str)> = vec![
                (recipe.username_field.as_str(), user.as_str()),
                (recipe.password_field.as_str(), pass.as_str()),
            ];
            form.extend(recipe.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let a = match post(inner, site, &recipe.url, &form, &mut jar).await {
                Ok(a) => a,
                Err(o) => return o,
            };
            if site.ban.matches(a.status, a.location.as_deref(), &a.body) {
                return failed(RefreshFailure::Blocked, Some(a.status));
            }
            if succeeded(recipe, &a, &jar) {
                return store_login(inner, site_name, id, &mut secrets, &jar);
            }
            match classify_step(recipe, &a) {
                Some(r) => {
                    page = page_of(&recipe.url, a);
                    (jar, r)
                }
                None => return failed(RefreshFailure::Rejected, Some(a.status)),
            }
        }
    };
    // Up to three challenge steps (e.g. captcha, then SMS).
    let mut solver_tries = 0;
    // The captcha image of the current page, fetched once for it.
    let mut image: Option<captcha::Image> = None;
    for _ in 0..4 {
        let rule: &ChallengeRule = &recipe.challenges[rule_ix];
        let kind = crate::names::parse_challenge_kind(&rule.kind).expect("validated at load");
        let solution = if let Some(a) = answer.take() {
            // A person's answer; a slider's or click's must fit its kind.
            match captcha::parse(kind, &a) {
                Some(s) => Some(s),
                None => return failed(RefreshFailure::Rejected, None),
            }
        } else if is_captcha(kind)
            && let Some(solver) = &site.captcha_solver
            && solver_tries < MAX_SOLVER_TRIES
        {
            solver_tries += 1;
            if image.is_none() {
                image = captcha::fetch_image(
                    inner,
                    site,
                    (site_name, id),
                    rule,
                    page.as_ref(),
                    &mut jar,
                )
                .await;
            }
            let input =
                captcha::solver_input((site_name, id), kind, rule, page.as_ref(), image.as_ref());
            let solved = solve_captcha(site, solver, kind, &input).await;
            if solved.is_some() {
                tracing::info!(
                    target: "credpool::refresh",
                    "[CRED] challenge handler credential={id} site={site_name} kind={} handler=captcha-solver",
                    crate::names::challenge_kind(kind)
                );
            }
            solved
        } else {
            None
        };
        let Some(solution) = solution else {
            // Have the code sent, then wait for it on a ticket.
            if let Some(url) = &rule.send_url {
                match post(inner, site, url, &[], &mut jar).await {
                    Ok(a) if a.status < 400 => {}
                    Ok(a) => return failed(RefreshFailure::Other, Some(a.status)),
                    Err(o) => return o,
                }
            }
            // A person answers from the picture the site showed and the
            // question it asked: kept, sealed, with the ticket that follows.
            if is_captcha(kind) && image.is_none() {
                image = captcha::fetch_image(
                    inner,
                    site,
                    (site_name, id),
                    rule,
                    page.as_ref(),
                    &mut jar,
                )
                .await;
            }
            let image = image.as_ref().filter(|_| is_captcha(kind));
            captcha::keep_context(
                &inner.vault,
                id,
                image,
                captcha::question(rule, page.as_ref()),
            );
            let mut pending = inner.pending.lock().unwrap();
            pending.retain(|_, p| p.created.elapsed() < PENDING_TTL);
            pending.insert(
                id.to_string(),
                Pending {
                    created: std::time::Instant::now(),
                    ticket_id: req.ticket_id.clone(),
                    jar,
                    rule: rule_ix,
                },
            );
            return RefreshOutcome::Challenged(kind);
        };
        let fields = captcha::fields(rule, &solution, track_seed());
        let form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let last = match post(inner, site, &rule.submit_url, &form, &mut jar).await {
            Ok(a) => a,
            Err(o) => return o,
        };
        if site
            .ban
            .matches(last.status, last.location.as_deref(), &last.body)
        {
            return failed(RefreshFailure::Blocked, Some(last.status));
        }
        if succeeded(recipe, &last, &jar) {
            return store_login(inner, site_name, id, &mut secrets, &jar);
        }
        match classify_step(recipe, &last) {
            Some(r) => {
                rule_ix = r;
                page = page_of(&rule.submit_url, last);
                image = None;
            }
            None => return failed(RefreshFailure::Rejected, Some(last.status)),
        }
    }
    failed(RefreshFailure::Rejected, None)
}

fn page_of(url: &str, a: Answer) -> Option<Page> {
    Some(Page {
        url: reqwest::Url::parse(url).ok()?,
        body: a.body,
    })
}

/// A fresh seed for a slider's track: no two logins drag alike.
fn track_seed() -> u64 {
    let mut b = [0u8; 8];
    // Without randomness the track is still human-like, only repeated.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn classify_step(recipe: &LoginRecipe, a: &Answer) -> Option<usize> {
    recipe
        .challenges
        .iter()
        .position(|c| c.detect.matches(a.status, a.location.as_deref(), &a.body))
}

fn store_login(
    inner: &Inner,
    site_name: &str,
    id: &str,
    secrets: &mut Secrets,
    jar: &Jar,
) -> RefreshOutcome {
    jar.store_into(secrets);
    if inner.vault.put_secrets(site_name, id, secrets).is_err() {
        return failed(RefreshFailure::Other, None);
    }
    RefreshOutcome::Refreshed(jar.earliest_expiry())
}

/// Runs `argv` bounded (see [`super::command`]); its stdout, or a failure.
async fn run_command(
    argv: &[String],
    env: &[String],
    input: &[u8],
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, RefreshFailure> {
    use super::command::{CommandError, run};
    run(argv, env, input, timeout).await.map_err(|e| match e {
        CommandError::Spawn => RefreshFailure::Misconfigured,
        CommandError::Failed => RefreshFailure::Rejected,
        CommandError::Timeout => RefreshFailure::Timeout,
        CommandError::Io | CommandError::TooLong => RefreshFailure::Other,
    })
}

/// Runs the solver on `input`; its answer read for `kind`, or `None`
/// (then a ticket waits for a person).
async fn solve_captcha(
    site: &SiteConfig,
    solver: &[String],
    kind: ChallengeKind,
    input: &serde_json::Value,
) -> Option<Solution> {
    let out = run_command(
        solver,
        &site.captcha_solver_env,
        input.to_string().as_bytes(),
        site.login_timeout(),
    )
    .await
    .ok()?;
    let text = Zeroizing::new(String::from_utf8(out.to_vec()).ok()?);
    captcha::parse(kind, &text)
}

/// What a login command reads on stdin.
#[derive(serde::Serialize)]
struct CommandInput<'a> {
    site: &'a str,
    credential_id: &'a str,
    username: Option<&'a str>,
    password: Option<&'a str>,
    totp_code: Option<&'a str>,
    answer: Option<&'a str>,
}

// Wiped on drop: the command's answer carries fresh cookies and tokens.
#[derive(serde::Deserialize, Zeroize, ZeroizeOnDrop)]
struct CommandCookie {
    name: String,
    value: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

#[derive(serde::Deserialize, Zeroize, ZeroizeOnDrop)]
struct CommandOutput {
    #[serde(default)]
    cookies: Vec<CommandCookie>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
    /// Set when the login met a challenge it cannot pass alone.
    #[serde(default)]
    challenge: Option<String>,
}

async fn command_login(
    inner: &Inner,
    site_name: &str,
    site: &SiteConfig,
    id: &str,
    argv: &[String],
    mut secrets: Secrets,
    answer: Option<Zeroizing<String>>,
) -> RefreshOutcome {
    let totp_code = match &secrets.totp_seed {
        Some(seed) => totp::code_for_seed(seed, inner.now_ms()).ok(),
        None => None,
    };
    let fields = CommandInput {
        site: site_name,
        credential_id: id,
        username: secrets.username.as_deref(),
        password: secrets.password.as_deref(),
        totp_code: totp_code.as_deref().map(|s| s.as_str()),
        answer: answer.as_deref().map(|s| s.as_str()),
    };
    // Written straight into a buffer that is wiped on drop, sized so it
    // never reallocates (a reallocation would leave a copy behind): JSON
    // escaping at most sextuples a byte.
    let secret_len: usize = [
        fields.username,
        fields.password,
        fields.totp_code,
        fields.answer,
    ]
    .iter()
    .map(|f| f.map_or(0, str::len))
    .sum();
    let capacity = 256 + 6 * (secret_len + site_name.len() + id.len());
    let mut input = Zeroizing::new(Vec::with_capacity(capacity));
    if serde_json::to_writer(&mut *input, &fields).is_err() {
        return failed(RefreshFailure::Other, None);
    }
    let out = match run_command(argv, &site.login_command_env, &input, site.login_timeout()).await {
        Ok(o) => o,
        Err(f) => return failed(f, None),
    };
    let Ok(parsed) = serde_json::from_slice::<CommandOutput>(&out) else {
        return failed(RefreshFailure::Other, None);
    };
    if let Some(kind) = &parsed.challenge {
        return match crate::names::parse_challenge_kind(kind) {
            Some(k) => RefreshOutcome::Challenged(k),
            None => failed(RefreshFailure::Other, None),
        };
    }
    if parsed.cookies.is_empty() && parsed.access_token.is_none() {
        return failed(RefreshFailure::Rejected, None);
    }
    let mut jar = Jar::default();
    for c in &parsed.cookies {
        let cookie = super::cookies::Cookie {
            name: c.name.clone(),
            value: c.value.clone(),
            domain: c
                .domain
                .clone()
                .unwrap_or_else(|| site_name.to_string())
                .trim_start_matches('.')
                .to_ascii_lowercase(),
            host_only: false,
            path: c.path.clone().unwrap_or_else(|| "/".into()),
            expires: c.expires_at,
            secure: false,
            http_only: false,
        };
        // What a command prints is held to what a site could set.
        if cookie.is_acceptable() {
            jar.cookies.push(cookie);
        }
    }
    jar.enforce_limits();
    if !jar.cookies.is_empty() {
        jar.store_into(&mut secrets);
    }
    if let Some(t) = &parsed.access_token {
        secrets.access_token = Some(t.clone());
    }
    if let Some(t) = &parsed.refresh_token {
        secrets.refresh_token = Some(t.clone());
    }
    if inner.vault.put_secrets(site_name, id, &secrets).is_err() {
        return failed(RefreshFailure::Other, None);
    }
    RefreshOutcome::Refreshed(parsed.expires_at.or_else(|| jar.earliest_expiry()))
}
