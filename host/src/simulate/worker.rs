//! A crawler worker of a simulated run: acquire for a site picked by its
//! share of the accounts, one real HTTP request with the lease's secrets,
//! the answer classified as a crawler would, and the report; everything it
//! saw is recorded for [`super::report`].

use super::report::{AcquireSeen, Answer, RequestSeen};
use super::run::Live;
use super::site::SimSite;
use crate::pool::Pool;
use crate::{AcquireRequest, Failure, FailureClass, Outcome, Status};
use rand::RngExt as _;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One crawler worker.
pub(super) struct Worker {
    pub(super) pool: Arc<Pool>,
    pub(super) sites: Arc<Vec<SimSite>>,
    pub(super) client: reqwest::Client,
    pub(super) live: Arc<Live>,
    pub(super) issued: Arc<AtomicU64>,
    pub(super) budget: u64,
    pub(super) deadline: Option<Instant>,
    pub(super) started: Instant,
    pub(super) naive: bool,
    pub(super) rng: StdRng,
}

impl Worker {
    fn since_start(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A site, in proportion to its accounts.
    fn pick_site(&mut self) -> usize {
        let total: usize = self.sites.iter().map(|s| s.accounts().len()).sum();
        let mut n = self.rng.random_range(0..total.max(1));
        for (i, s) in self.sites.iter().enumerate() {
            if n < s.accounts().len() {
                return i;
            }
            n -= s.accounts().len();
        }
        0
    }

    pub(super) async fn crawl(mut self) -> (Vec<AcquireSeen>, Vec<RequestSeen>) {
        let mut acquires = Vec::new();
        let mut requests = Vec::new();
        loop {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if self.issued.fetch_add(1, Ordering::SeqCst) >= self.budget {
                // Given back: a worker refused at the last request gives
                // its own back and must find the budget open to retry.
                self.issued.fetch_sub(1, Ordering::SeqCst);
                break;
            }
            let si = self.pick_site();
            let site_name = self.sites[si].spec().name.clone();
            let had_unbanned = self.sites[si].unbanned_accounts() > 0;
            let pool = self.pool.clone();
            let got =
                tokio::task::block_in_place(|| pool.acquire(&AcquireRequest::site(&site_name)));
            let at_ms = self.since_start();
            let got = match got {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(target: "credpool::simulate", "acquire failed: {e}");
                    self.issued.fetch_sub(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            acquires.push(AcquireSeen {
                at_ms,
                granted: got.lease.is_some(),
                site_had_unbanned: had_unbanned,
            });
            let Some(lease) = got.lease else {
                // Wait for the slot the answer names, briefly.
                self.issued.fetch_sub(1, Ordering::SeqCst);
                let now = chrono::Utc::now().timestamp_millis();
                let wait = got
                    .next_free_at
                    .map(|t| (t - now).clamp(5, 250) as u64)
                    .unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            };
            let n = self.rng.random_range(0..1_000_000u32);
            let (answer, retry_after) =
                fetch(&self.client, &self.sites[si], &lease.secrets, n).await;
            let outcome = if self.naive {
                naive_outcome(answer)
            } else {
                outcome_of(answer, retry_after)
            };
            let pool = self.pool.clone();
            match tokio::task::block_in_place(|| pool.report(lease.id, outcome)) {
                Ok(effect) if effect.status == Status::Cooling => {
                    self.live
                        .rested_rate_limited
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(effect) if effect.status == Status::Suspended => {
                    self.live.suspended.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(target: "credpool::simulate", "report failed: {e}"),
            }
            self.live.requests.fetch_add(1, Ordering::Relaxed);
            if answer == Answer::Ok {
                self.live.ok.fetch_add(1, Ordering::Relaxed);
            }
            requests.push(RequestSeen {
                at_ms: self.since_start(),
                credential: lease.credential.id.to_string(),
                answer,
            });
        }
        (acquires, requests)
    }
}

/// One crawl request with the credential, classified.
async fn fetch(
    client: &reqwest::Client,
    site: &SimSite,
    secrets: &crate::secrets::Secrets,
    item: u32,
) -> (Answer, Option<u32>) {
    let mut req = client.get(format!("{}/item/{item}", site.base_url()));
    if let Some(token) = &secrets.access_token {
        req = req.bearer_auth(token);
    }
    if !secrets.cookies.is_empty() {
        let cookie: Vec<String> = secrets
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        req = req.header(reqwest::header::COOKIE, cookie.join("; "));
    }
    let Ok(resp) = req.send().await else {
        return (Answer::Network, None);
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let body = resp.text().await.unwrap_or_default();
    (classify(status, &body), retry_after)
}

/// What a crawler makes of an answer.
pub fn classify(status: u16, body: &str) -> Answer {
    match status {
        200 if body.contains("<form id=\"captcha\"") => Answer::Challenged,
        200..=299 => Answer::Ok,
        401 | 302 => Answer::Expired,
        403 if body.contains("account banned") => Answer::Banned,
        403 => Answer::Blocked,
        429 => Answer::RateLimited,
        _ => Answer::Network,
    }
}

/// The naive baseline's report: a blocked, banned, rate-limited or
/// logged-out answer retires the session (a fresh login), nothing rests.
pub fn naive_outcome(answer: Answer) -> Outcome {
    match answer {
        Answer::Blocked | Answer::Banned | Answer::RateLimited | Answer::Expired => {
            Outcome::Failure(Failure {
                class: FailureClass::Expired,
                http_status: None,
                retry_after_secs: None,
            })
        }
        other => outcome_of(other, None),
    }
}

/// The report the worker gives the pool.
pub fn outcome_of(answer: Answer, retry_after: Option<u32>) -> Outcome {
    let fail = |class, status| {
        Outcome::Failure(Failure {
            class,
            http_status: status,
            retry_after_secs: None,
        })
    };
    match answer {
        Answer::Ok => Outcome::Success,
        Answer::Challenged => fail(FailureClass::Challenged, Some(200)),
        Answer::Expired => fail(FailureClass::Expired, Some(401)),
        Answer::Blocked | Answer::Banned => fail(FailureClass::Blocked, Some(403)),
        Answer::RateLimited => Outcome::Failure(Failure {
            class: FailureClass::RateLimited,
            http_status: Some(429),
            retry_after_secs: retry_after,
        }),
        Answer::Network => fail(FailureClass::Network, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_a_crawler_would() {
        assert_eq!(classify(200, "<html>item 1</html>"), Answer::Ok);
        assert_eq!(
            classify(200, "<form id=\"captcha\" action=\"/captcha\">"),
            Answer::Challenged
        );
        assert_eq!(classify(401, ""), Answer::Expired);
        assert_eq!(classify(403, "account banned"), Answer::Banned);
        assert_eq!(classify(403, "access denied"), Answer::Blocked);
        assert_eq!(classify(429, ""), Answer::RateLimited);
        assert_eq!(classify(500, ""), Answer::Network);
        let Outcome::Failure(f) = outcome_of(Answer::RateLimited, Some(7)) else {
            panic!("a 429 is a failure");
        };
        assert_eq!(
            (f.class, f.retry_after_secs),
            (FailureClass::RateLimited, Some(7))
        );
        assert!(matches!(outcome_of(Answer::Ok, None), Outcome::Success));
    }
}
