//! What a simulated crawl measured, computed from what its workers saw
//! (every acquire and every HTTP answer), the refresher's own record of
//! each refresh, the alerts raised, and the site's bans. Pure arithmetic
//! over [`Observations`], so a small fixed run can check every figure.

use serde::Serialize;
use std::collections::BTreeMap;

/// The card's service levels.
pub const SLO_AVAILABILITY: f64 = 0.95;
pub const SLO_REFRESH: f64 = 0.90;
pub const SLO_DETECTION: f64 = 0.95;

/// How the site answered one crawl request, as the worker classified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    Ok,
    /// A captcha page instead of the content.
    Challenged,
    /// 401: the session or token is no longer valid.
    Expired,
    /// 403 `access denied`: blocked for a while.
    Blocked,
    /// 403 `account banned`: for good.
    Banned,
    /// 429.
    RateLimited,
    /// No answer (connection, timeout).
    Network,
}

impl Answer {
    /// The site refuses the account itself (not the session, not the pace).
    pub fn refuses_account(self) -> bool {
        matches!(self, Answer::Blocked | Answer::Banned)
    }

    pub fn name(self) -> &'static str {
        match self {
            Answer::Ok => "ok",
            Answer::Challenged => "challenged",
            Answer::Expired => "expired",
            Answer::Blocked => "blocked",
            Answer::Banned => "banned",
            Answer::RateLimited => "rate-limited",
            Answer::Network => "network",
        }
    }
}

/// One acquire call of a worker.
#[derive(Clone, Debug, PartialEq)]
pub struct AcquireSeen {
    pub at_ms: u64,
    pub granted: bool,
    /// Whether the site still had an account it had not banned for good
    /// (the card's availability counts only those calls).
    pub site_had_unbanned: bool,
}

/// One crawl request a worker made with a credential.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSeen {
    pub at_ms: u64,
    pub credential: String,
    pub answer: Answer,
}

/// The refresher's count of finished refreshes (HTTP side, not the policy's).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RefreshSeen {
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Failures because the site refused the account itself (banned or
    /// blocked): outside the card's scope ("accounts not banned").
    pub failed_refused: u64,
    pub challenged: u64,
    /// Failures by class (`logged-out`, `network`, …).
    pub failures: BTreeMap<String, u64>,
}

/// Everything a run recorded.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    pub acquires: Vec<AcquireSeen>,
    pub requests: Vec<RequestSeen>,
    pub refresh: RefreshSeen,
    /// Alerts by kind with the time they were raised.
    pub alerts: Vec<(String, u64)>,
    /// When the site changed its defences, if it did in the run.
    pub defence_change_ms: Option<u64>,
    /// When each block the site started for over-use began (the site's
    /// own record: over its rate, not its random blocks), since the start.
    pub over_use_blocks_ms: Vec<u64>,
    pub accounts: usize,
    /// Accounts the site banned for good during the run, and how many of
    /// those it banned for abuse (used while blocked).
    pub site_banned: usize,
    pub site_banned_for_abuse: usize,
    /// Accounts the pool retired for good (banned in the pool at the end).
    pub retired: usize,
    pub duration_ms: u64,
    /// How long the first logins took before the crawl started.
    pub warm_up_ms: u64,
    pub pool: PoolEvents,
}

/// What the pool did that a person watching would look for.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PoolEvents {
    /// The first credentials handed out on the first site, in order.
    pub rotation: Vec<String>,
    /// Reports that rested a credential: after a 429 (cooling) or a 403
    /// (suspended).
    pub rested_rate_limited: u64,
    pub suspended: u64,
    /// Rests that ended (the credential back in rotation).
    pub cooldowns_ended: u64,
    /// Challenge tickets opened, by kind.
    pub tickets_opened: BTreeMap<String, u64>,
    /// Tickets the simulated person answered (SMS codes, captchas); the
    /// host answers two-factor ones from the TOTP seed.
    pub answered_by_person: u64,
}

/// Parameters of the anomaly-detection measure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DetectionRule {
    /// Requests allowed after the first refusal before the account must be
    /// out of rotation.
    pub k: u32,
    /// A use this long after the previous refusal is a probe after a rest,
    /// not the account still in rotation.
    pub rest_gap_ms: u64,
}

impl Default for DetectionRule {
    fn default() -> Self {
        DetectionRule {
            k: 1,
            rest_gap_ms: 3_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Availability {
    pub acquires: u64,
    pub granted: u64,
    /// Acquires made while the site had an unbanned account.
    pub in_scope: u64,
    pub granted_in_scope: u64,
    pub share: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    pub k: u32,
    /// Refusal episodes: an account starts being refused (403).
    pub episodes: u64,
    /// Episodes where the account was out of rotation within k requests.
    pub in_time: u64,
    pub share: Option<f64>,
    /// Seconds from the defence change to the first alert about it.
    pub defence_change_at_s: Option<f64>,
    pub defence_change_alerted_after_s: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Burnt {
    pub site_banned: usize,
    pub site_banned_for_abuse: usize,
    pub retired_by_pool: usize,
    /// Accounts lost to the crawl: banned by the site or retired by the
    /// pool, per 10,000 requests.
    pub lost_per_10k_requests: f64,
    pub site_banned_per_10k_requests: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Slo {
    pub availability: bool,
    pub refresh: bool,
    pub detection: bool,
    pub no_leak: bool,
}

/// What a pace cost and earned: successes, and blocks (403 `access denied`)
/// before and after the defence change.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PaceFigures {
    pub ok: u64,
    pub rate_limited: u64,
    pub blocked: u64,
    pub blocked_after_change: u64,
    /// Accounts blocked at least once after the change.
    pub accounts_blocked_after_change: u64,
    /// Blocks in the last quarter of the run: whether blocks stopped.
    pub blocked_last_quarter: u64,
    /// Of the blocks after the change, those the site started for use over
    /// its rate (the rest are its random blocks, which no pace avoids), by
    /// the site's own record; and those in the last quarter.
    pub over_use_after_change: u64,
    pub over_use_last_quarter: u64,
}

/// The pace figures of a run's requests and the site's over-use blocks.
pub fn pace_figures(
    requests: &[RequestSeen],
    over_use_ms: &[u64],
    change_ms: Option<u64>,
    end_ms: u64,
) -> PaceFigures {
    let mut f = PaceFigures::default();
    let last_quarter = end_ms - end_ms / 4;
    for &at in over_use_ms {
        if change_ms.is_some_and(|c| at >= c) {
            f.over_use_after_change += 1;
        }
        if at >= last_quarter {
            f.over_use_last_quarter += 1;
        }
    }
    let mut after = std::collections::BTreeSet::new();
    for r in requests {
        match r.answer {
            Answer::Ok => f.ok += 1,
            Answer::RateLimited => f.rate_limited += 1,
            Answer::Blocked => {
                f.blocked += 1;
                if change_ms.is_some_and(|at| r.at_ms >= at) {
                    f.blocked_after_change += 1;
                    after.insert(r.credential.as_str());
                }
                if r.at_ms >= last_quarter {
                    f.blocked_last_quarter += 1;
                }
            }
            _ => {}
        }
    }
    f.accounts_blocked_after_change = after.len() as u64;
    f
}

/// The summary of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The policy that ran (strategy or baseline).
    pub policy: String,
    pub accounts: usize,
    pub workers: usize,
    pub seconds: f64,
    pub warm_up_seconds: f64,
    pub requests: u64,
    pub answers: BTreeMap<&'static str, u64>,
    pub requests_per_sec: f64,
    pub ok_per_account_hour: f64,
    pub availability: Availability,
    pub refresh: RefreshSeen,
    pub refresh_success: Option<f64>,
    pub detection: Detection,
    pub burnt: Burnt,
    pub alerts: BTreeMap<String, u64>,
    pub pool: PoolEvents,
    pub leaks: LeakScan,
    pub slo: Slo,
    pub pace: PaceFigures,
}

/// The search of a run's log and data directory for the accounts' secrets.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LeakScan {
    pub files: usize,
    pub bytes: u64,
    pub secrets: usize,
    /// Files where a secret was found (never the secret).
    pub found_in: Vec<String>,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Availability over the acquires made while the site had an unbanned account.
pub fn availability(acquires: &[AcquireSeen]) -> Availability {
    let in_scope: Vec<_> = acquires.iter().filter(|a| a.site_had_unbanned).collect();
    let granted_in_scope = in_scope.iter().filter(|a| a.granted).count() as u64;
    Availability {
        acquires: acquires.len() as u64,
        granted: acquires.iter().filter(|a| a.granted).count() as u64,
        in_scope: in_scope.len() as u64,
        granted_in_scope,
        share: ratio(granted_in_scope, in_scope.len() as u64),
    }
}

/// Refusal episodes and whether each account left rotation within `k`
/// requests. An episode starts at an account's first 403; each further
/// 403 that follows the previous one within `rest_gap_ms` is a request
/// made while the account was still in rotation. A 403 after a longer gap
/// is a probe after a rest (the pool took it out), and any other answer
/// ends the episode.
pub fn detection(requests: &[RequestSeen], rule: DetectionRule) -> (u64, u64) {
    let mut by_credential: BTreeMap<&str, Vec<&RequestSeen>> = BTreeMap::new();
    for r in requests {
        by_credential.entry(&r.credential).or_default().push(r);
    }
    let (mut episodes, mut in_time) = (0u64, 0u64);
    for seen in by_credential.values_mut() {
        seen.sort_by_key(|r| r.at_ms);
        // (requests after the first refusal while in rotation, last refusal)
        let mut open: Option<(u32, u64, bool)> = None;
        let mut close = |open: &mut Option<(u32, u64, bool)>| {
            if let Some((extra, _, _)) = open.take() {
                episodes += 1;
                if extra <= rule.k {
                    in_time += 1;
                }
            }
        };
        for r in seen.iter() {
            match (&mut open, r.answer.refuses_account()) {
                (None, true) => open = Some((0, r.at_ms, false)),
                (Some((extra, last, rested)), true) => {
                    if r.at_ms.saturating_sub(*last) >= rule.rest_gap_ms {
                        *rested = true;
                    } else if !*rested {
                        *extra += 1;
                    }
                    *last = r.at_ms;
                }
                (Some(_), false) => close(&mut open),
                (None, false) => {}
            }
        }
        close(&mut open);
    }
    (episodes, in_time)
}

/// The report of a run.
pub fn report(
    policy: &str,
    workers: usize,
    obs: &Observations,
    leaks: LeakScan,
    rule: DetectionRule,
) -> Report {
    let seconds = obs.duration_ms as f64 / 1000.0;
    let requests = obs.requests.len() as u64;
    let mut answers = BTreeMap::new();
    for r in &obs.requests {
        *answers.entry(r.answer.name()).or_insert(0u64) += 1;
    }
    let ok = answers.get("ok").copied().unwrap_or(0);
    let availability = availability(&obs.acquires);
    let refresh_success = ratio(
        obs.refresh.succeeded,
        obs.refresh.succeeded + obs.refresh.failed - obs.refresh.failed_refused,
    );
    let (episodes, in_time) = detection(&obs.requests, rule);
    let change_alert = obs.defence_change_ms.and_then(|at| {
        obs.alerts
            .iter()
            .filter(|(kind, t)| kind == "block-burst" && *t >= at)
            .map(|(_, t)| (t - at) as f64 / 1000.0)
            .reduce(f64::min)
    });
    let mut alerts = BTreeMap::new();
    for (kind, _) in &obs.alerts {
        *alerts.entry(kind.clone()).or_insert(0) += 1;
    }
    let per_10k = |n: usize| {
        if requests == 0 {
            0.0
        } else {
            n as f64 * 10_000.0 / requests as f64
        }
    };
    let lost = obs.site_banned + obs.retired;
    let detection = Detection {
        k: rule.k,
        episodes,
        in_time,
        share: ratio(in_time, episodes),
        defence_change_at_s: obs.defence_change_ms.map(|t| t as f64 / 1000.0),
        defence_change_alerted_after_s: change_alert,
    };
    let slo = Slo {
        availability: availability.share.is_some_and(|s| s >= SLO_AVAILABILITY),
        refresh: refresh_success.is_some_and(|s| s >= SLO_REFRESH),
        // No refusal in the run: nothing to detect, nothing missed.
        detection: detection.share.is_none_or(|s| s >= SLO_DETECTION)
            && (obs.defence_change_ms.is_none() || change_alert.is_some()),
        // A scan that searched nothing proves nothing.
        no_leak: leaks.found_in.is_empty() && leaks.secrets > 0 && leaks.files > 0,
    };
    Report {
        policy: policy.to_string(),
        accounts: obs.accounts,
        workers,
        seconds,
        warm_up_seconds: obs.warm_up_ms as f64 / 1000.0,
        requests,
        requests_per_sec: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        ok_per_account_hour: if seconds > 0.0 && obs.accounts > 0 {
            ok as f64 / obs.accounts as f64 * 3600.0 / seconds
        } else {
            0.0
        },
        answers,
        availability,
        refresh: obs.refresh.clone(),
        refresh_success,
        detection,
        burnt: Burnt {
            site_banned: obs.site_banned,
            site_banned_for_abuse: obs.site_banned_for_abuse,
            retired_by_pool: obs.retired,
            lost_per_10k_requests: per_10k(lost),
            site_banned_per_10k_requests: per_10k(obs.site_banned),
        },
        alerts,
        pool: obs.pool.clone(),
        leaks,
        slo,
        pace: pace_figures(
            &obs.requests,
            &obs.over_use_blocks_ms,
            obs.defence_change_ms,
            obs.duration_ms,
        ),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// The summary as a table for a person.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| {
        out.push_str(&format!("  {k:<38} {v}\n"));
    };
    line("policy", r.policy.clone());
    line(
        "run",
        format!(
            "{:.0} s, {} accounts, {} workers (first logins took {:.1} s before)",
            r.seconds, r.accounts, r.workers, r.warm_up_seconds
        ),
    );
    line(
        "credential availability (SLO >= 95%)",
        format!(
            "{} ({} of {} acquires) {}",
            pct(r.availability.share),
            r.availability.granted_in_scope,
            r.availability.in_scope,
            mark(r.slo.availability)
        ),
    );
    line(
        "session refresh success (SLO >= 90%)",
        format!(
            "{} ({} of {} finished; {} refused accounts left out) {}",
            pct(r.refresh_success),
            r.refresh.succeeded,
            r.refresh.succeeded + r.refresh.failed - r.refresh.failed_refused,
            r.refresh.failed_refused,
            mark(r.slo.refresh)
        ),
    );
    if !r.refresh.failures.is_empty() {
        let f: Vec<String> = r
            .refresh
            .failures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        line("refresh failures", f.join(", "));
    }
    line(
        "anomaly detection (SLO >= 95%)",
        format!(
            "{} of refusal episodes out of rotation within {} request(s) ({} of {}) {}",
            pct(r.detection.share),
            r.detection.k,
            r.detection.in_time,
            r.detection.episodes,
            mark(r.slo.detection)
        ),
    );
    if let Some(at) = r.detection.defence_change_at_s {
        line(
            "site defence change",
            match r.detection.defence_change_alerted_after_s {
                Some(after) => format!("at {at:.0} s, alerted {after:.1} s later"),
                None => format!("at {at:.0} s, NOT alerted"),
            },
        );
    }
    line(
        "requests per second",
        format!("{:.0} ({} requests)", r.requests_per_sec, r.requests),
    );
    line(
        "successful requests per account-hour",
        format!("{:.0}", r.ok_per_account_hour),
    );
    line(
        "accounts lost per 10,000 requests",
        format!(
            "{:.1} ({} banned by the site, {} of them for abuse; {} retired by the pool)",
            r.burnt.lost_per_10k_requests,
            r.burnt.site_banned,
            r.burnt.site_banned_for_abuse,
            r.burnt.retired_by_pool
        ),
    );
    if !r.pool.rotation.is_empty() {
        line("first credentials handed out", r.pool.rotation.join(" -> "));
    }
    if !r.pool.tickets_opened.is_empty() {
        let t: Vec<String> = r
            .pool
            .tickets_opened
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        line(
            "challenge tickets",
            format!(
                "{}; {} answered by the simulated person, two-factor by the host (TOTP)",
                t.join(", "),
                r.pool.answered_by_person
            ),
        );
    }
    line(
        "rests",
        format!(
            "{} after a 429, {} suspended after a 403, {} rests ended",
            r.pool.rested_rate_limited, r.pool.suspended, r.pool.cooldowns_ended
        ),
    );
    let answers: Vec<String> = r.answers.iter().map(|(k, v)| format!("{k} {v}")).collect();
    line("answers", answers.join(", "));
    if !r.alerts.is_empty() {
        let alerts: Vec<String> = r.alerts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        line("alerts", alerts.join(", "));
    }
    line(
        "plaintext leaks",
        if r.leaks.found_in.is_empty() {
            format!(
                "none ({} secrets searched for in {} files, {} bytes)",
                r.leaks.secrets, r.leaks.files, r.leaks.bytes
            )
        } else {
            format!("FOUND in {}", r.leaks.found_in.join(", "))
        },
    );
    out
}

/// Several runs side by side (`--compare`).
pub fn render_comparison(reports: &[Report]) -> String {
    let mut out = format!(
        "{:<30} {:>8} {:>8} {:>8} {:>6} {:>10} {:>13} {:>10}\n",
        "policy", "avail", "refresh", "detect", "req/s", "ok/acct-h", "lost/10k req", "site bans"
    );
    for r in reports {
        out.push_str(&format!(
            "{:<30} {:>8} {:>8} {:>8} {:>6.0} {:>10.0} {:>13.1} {:>10}\n",
            r.policy,
            pct(r.availability.share),
            pct(r.refresh_success),
            pct(r.detection.share),
            r.requests_per_sec,
            r.ok_per_account_hour,
            r.burnt.lost_per_10k_requests,
            r.burnt.site_banned
        ));
    }
    out
}

/// The pace rows of `--compare`: each run's successes against the best
/// fixed rate's (in hindsight), and its blocks.
pub fn render_pace_comparison(reports: &[Report]) -> String {
    let best = reports
        .iter()
        .filter(|r| r.policy.starts_with("credpool fixed"))
        .max_by_key(|r| r.pace.ok);
    let mut out = format!(
        "{:<30} {:>8} {:>9} {:>6} {:>8} {:>12} {:>14} {:>11} {:>17} {:>18}\n",
        "pace",
        "ok",
        "vs best",
        "429s",
        "blocks",
        "after change",
        "accts blocked",
        "last 1/4",
        "over-use after",
        "over-use last 1/4"
    );
    for r in reports {
        let mut name = r.policy.clone();
        if best.is_some_and(|b| b.policy == r.policy) {
            name.push_str(" (best)");
        }
        let vs = best
            .filter(|b| b.pace.ok > 0)
            .map(|b| format!("{:.1}%", r.pace.ok as f64 * 100.0 / b.pace.ok as f64))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<30} {:>8} {:>9} {:>6} {:>8} {:>12} {:>14} {:>11} {:>17} {:>18}\n",
            name,
            r.pace.ok,
            vs,
            r.pace.rate_limited,
            r.pace.blocked,
            r.pace.blocked_after_change,
            r.pace.accounts_blocked_after_change,
            r.pace.blocked_last_quarter,
            r.pace.over_use_after_change,
            r.pace.over_use_last_quarter
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(at_ms: u64, credential: &str, answer: Answer) -> RequestSeen {
        RequestSeen {
            at_ms,
            credential: credential.into(),
            answer,
        }
    }

    fn acq(granted: bool, site_had_unbanned: bool) -> AcquireSeen {
        AcquireSeen {
            at_ms: 0,
            granted,
            site_had_unbanned,
        }
    }

    #[test]
    fn availability_counts_only_acquires_while_the_site_had_an_unbanned_account() {
        let a = availability(&[
            acq(true, true),
            acq(true, true),
            acq(true, true),
            acq(false, true),
            acq(false, false),
            acq(false, false),
        ]);
        assert_eq!((a.acquires, a.granted), (6, 3));
        assert_eq!((a.in_scope, a.granted_in_scope), (4, 3));
        assert_eq!(a.share, Some(0.75));
        assert_eq!(availability(&[]).share, None);
    }

    #[test]
    fn an_episode_is_in_time_when_the_account_leaves_rotation_within_k_requests() {
        use Answer::*;
        let rule = DetectionRule {
            k: 1,
            rest_gap_ms: 1_000,
        };
        let seen = vec![
            // a: refused once, then rested; a probe 5 s later is refused
            // again (same episode, still in time); then it recovers.
            req(0, "a", Ok),
            req(100, "a", Blocked),
            req(5_100, "a", Blocked),
            req(9_000, "a", Ok),
            // b: three refusals back to back: two extra requests, late.
            req(0, "b", Banned),
            req(200, "b", Banned),
            req(400, "b", Banned),
            // c: one extra request: in time with k = 1; a second episode
            // later, refused once.
            req(0, "c", Blocked),
            req(300, "c", Blocked),
            req(700, "c", Ok),
            req(800, "c", RateLimited),
            req(20_000, "c", Blocked),
            // d: never refused.
            req(0, "d", Ok),
        ];
        assert_eq!(detection(&seen, rule), (4, 3));
        let strict = DetectionRule { k: 0, ..rule };
        assert_eq!(detection(&seen, strict), (4, 2));
        // Order of the input does not matter.
        let mut reversed = seen.clone();
        reversed.reverse();
        assert_eq!(detection(&reversed, rule), (4, 3));
    }

    #[test]
    fn a_small_fixed_run_adds_up() {
        use Answer::*;
        let obs = Observations {
            acquires: vec![acq(true, true); 19]
                .into_iter()
                .chain([acq(false, true)])
                .collect(),
            requests: vec![
                req(0, "a", Ok),
                req(10, "a", Ok),
                req(20, "b", Blocked),
                req(30, "c", RateLimited),
                req(40, "a", Ok),
                req(50, "c", Expired),
                req(60, "a", Ok),
                req(70, "b", Blocked),
                req(80, "b", Blocked),
                req(90, "d", Ok),
            ],
            refresh: RefreshSeen {
                attempts: 12,
                succeeded: 9,
                failed: 3,
                failed_refused: 2,
                challenged: 0,
                failures: BTreeMap::new(),
            },
            alerts: vec![
                ("low-health".into(), 500),
                ("block-burst".into(), 31_500),
                ("block-burst".into(), 45_000),
            ],
            defence_change_ms: Some(30_000),
            over_use_blocks_ms: vec![1_000, 1_600],
            accounts: 4,
            site_banned: 1,
            site_banned_for_abuse: 1,
            retired: 1,
            duration_ms: 2_000,
            warm_up_ms: 0,
            pool: PoolEvents::default(),
        };
        let scanned = LeakScan {
            files: 2,
            bytes: 900,
            secrets: 8,
            found_in: Vec::new(),
        };
        let r = report("test", 2, &obs, scanned, DetectionRule::default());
        assert_eq!(r.requests, 10);
        assert_eq!(r.requests_per_sec, 5.0);
        assert_eq!(r.answers["ok"], 5);
        assert_eq!(r.answers["blocked"], 3);
        // 5 ok over 4 accounts in 2 s: 1.25 per account per 2 s.
        assert_eq!(r.ok_per_account_hour, 2250.0);
        assert_eq!(r.availability.share, Some(0.95));
        assert!(r.slo.availability);
        // 9 of (9 + 3 - 2): 90%.
        assert_eq!(r.refresh_success, Some(0.9));
        assert!(r.slo.refresh);
        // b: refused three times within the rest gap: two extra requests.
        assert_eq!((r.detection.episodes, r.detection.in_time), (1, 0));
        assert!(!r.slo.detection);
        assert_eq!(r.detection.defence_change_alerted_after_s, Some(1.5));
        assert_eq!(r.alerts["block-burst"], 2);
        // 2 lost (1 banned + 1 retired) in 10 requests.
        assert_eq!(r.burnt.lost_per_10k_requests, 2000.0);
        assert_eq!(r.burnt.site_banned_per_10k_requests, 1000.0);
        // No change within the 2 s: only the later over-use block is in
        // the last quarter.
        assert_eq!(
            (r.pace.over_use_after_change, r.pace.over_use_last_quarter),
            (0, 1)
        );
        assert!(r.slo.no_leak);
        let table = render(&r);
        assert!(table.contains("95.0% (19 of 20 acquires) ok"), "{table}");
        assert!(table.contains("MISSED"), "{table}");
        let blind = report("t", 2, &obs, LeakScan::default(), DetectionRule::default());
        assert!(!blind.slo.no_leak, "an empty scan is no proof");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["availability"]["share"], 0.95);
        assert_eq!(json["burnt"]["site_banned"], 1);
    }
}
