//! The card's data fields (token type, local-storage names, device id,
//! fingerprint, user agent, two-factor): checked on add, kept across a
//! reload, and shown at the levels that may see them.

use crate::config::PolicyConfig;
use crate::model::*;
use crate::pool::Pool;
use crate::ports::fake::FakeHost;

const T0: Millis = 1_700_000_000_000;

fn pool() -> Pool<FakeHost> {
    Pool::load(FakeHost::new(T0), PolicyConfig::default()).unwrap()
}

fn new(id: &str, kind: Kind) -> NewCredential {
    NewCredential {
        id: Some(id.to_string()),
        site: "jd.com".to_string(),
        kind: Some(kind),
        ..Default::default()
    }
}

fn field_of(e: PoolError) -> String {
    match e {
        PoolError::InvalidInput { field, .. } => field,
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[test]
fn the_card_fields_survive_a_reload_and_show_by_level() {
    let mut p = pool();
    p.add(NewCredential {
        token_type: Some(" DPoP ".into()),
        token_scope: vec!["read".into()],
        source_account: Some("acct-1".into()),
        ..new("t1", Kind::Token)
    })
    .unwrap();
    p.add(NewCredential {
        local_storage_names: vec!["auth_state".into()],
        cookie_names: vec!["sid".into()],
        user_agent: Some("Mozilla/5.0 (X11; Linux)".into()),
        ..new("s1", Kind::Session)
    })
    .unwrap();
    p.add(NewCredential {
        device_id: Some("dev-42".into()),
        fingerprint: Some("fp-7".into()),
        user_agent: Some("okhttp/4.12".into()),
        ..new("d1", Kind::Device)
    })
    .unwrap();
    p.add(NewCredential {
        two_factor: true,
        username: Some("alice".into()),
        ..new("a1", Kind::Account)
    })
    .unwrap();

    let p = Pool::load(p.host, PolicyConfig::default()).unwrap();
    let t = p.get("t1").unwrap();
    assert_eq!(t.token_type.as_deref(), Some("DPoP"), "trimmed, kept");
    assert_eq!(t.token_scope, vec!["read".to_string()]);
    assert_eq!(t.source_account.as_deref(), Some("acct-1"));
    let s = p.get("s1").unwrap();
    assert_eq!(s.local_storage_names, vec!["auth_state".to_string()]);
    assert_eq!(s.cookie_names, vec!["sid".to_string()]);
    assert_eq!(s.user_agent.as_deref(), Some("Mozilla/5.0 (X11; Linux)"));
    let d = p.get("d1").unwrap();
    assert_eq!(
        (
            d.device_id.as_deref(),
            d.fingerprint.as_deref(),
            d.user_agent.as_deref()
        ),
        (Some("dev-42"), Some("fp-7"), Some("okhttp/4.12"))
    );
    assert!(p.get("a1").unwrap().two_factor);
    assert!(!t.two_factor);

    // Internal sees the token type and the two-factor flag ...
    let v = p.view("t1", AccessLevel::Internal).unwrap();
    let i = v.internal.unwrap();
    assert_eq!(i.token_type.as_deref(), Some("DPoP"));
    assert!(v.sensitive.is_none());
    assert!(
        p.view("a1", AccessLevel::Internal)
            .unwrap()
            .internal
            .unwrap()
            .two_factor
    );
    // ... sensitive the names and the device identity.
    let v = p
        .view("d1", AccessLevel::Sensitive)
        .unwrap()
        .sensitive
        .unwrap();
    assert_eq!(v.device_id.as_deref(), Some("dev-42"));
    assert_eq!(v.fingerprint.as_deref(), Some("fp-7"));
    assert_eq!(v.user_agent.as_deref(), Some("okhttp/4.12"));
    let v = p
        .view("s1", AccessLevel::Sensitive)
        .unwrap()
        .sensitive
        .unwrap();
    assert_eq!(v.local_storage_names, vec!["auth_state".to_string()]);
    // Public shows none of it.
    let v = p.view("d1", AccessLevel::Public).unwrap();
    assert!(v.internal.is_none() && v.sensitive.is_none());
}

#[test]
fn bad_card_fields_are_refused_by_name_and_nothing_is_added() {
    let mut p = pool();
    let cases = [
        (
            NewCredential {
                token_type: Some("Bearer".into()),
                ..new("x1", Kind::Session)
            },
            "token_type",
        ),
        (
            NewCredential {
                token_type: Some("two words".into()),
                ..new("x2", Kind::Token)
            },
            "token_type",
        ),
        (
            NewCredential {
                local_storage_names: vec!["".into()],
                ..new("x3", Kind::Session)
            },
            "local_storage",
        ),
        (
            NewCredential {
                user_agent: Some("UA\r\nX-Injected: 1".into()),
                ..new("x4", Kind::Device)
            },
            "user_agent",
        ),
        (
            NewCredential {
                device_id: Some("a b".into()),
                ..new("x5", Kind::Device)
            },
            "device_id",
        ),
    ];
    for (bad, field) in cases {
        assert_eq!(field_of(p.add(bad).unwrap_err()), field);
    }
    assert!(p.list(&Default::default(), AccessLevel::Public).is_empty());
}

#[test]
fn the_cards_spellings_of_a_kind_and_strategies_are_read() {
    let k: Kind = serde_json::from_str("\"api_key\"").unwrap();
    assert_eq!(k, Kind::ApiKey);
    for (json, strategy) in [
        ("round_robin", crate::config::Strategy::RoundRobin),
        ("health_based", crate::config::Strategy::HealthWeighted),
        ("round-robin", crate::config::Strategy::RoundRobin),
    ] {
        let c =
            PolicyConfig::from_json(&format!(r#"{{"allocation_strategy": "{json}"}}"#)).unwrap();
        assert_eq!(c.strategy, strategy, "{json}");
    }
}

/// The fields of the last event named `name`.
fn last_event(p: &Pool<FakeHost>, name: &str) -> Vec<(String, String)> {
    p.host
        .events
        .iter()
        .rev()
        .find(|e| e.1 == name)
        .unwrap_or_else(|| panic!("no {name} event in {:?}", p.host.events))
        .2
        .clone()
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {fields:?}"))
}

#[test]
fn a_block_is_logged_with_its_reason_and_http_status() {
    let mut p = pool();
    p.add(new("s1", Kind::Session)).unwrap();
    let g = p
        .acquire(&AcquireRequest {
            site: "jd.com".into(),
            ..Default::default()
        })
        .unwrap()
        .grant
        .unwrap();
    p.report(
        g.lease,
        Outcome::Failure(Failure {
            class: FailureClass::Blocked,
            http_status: Some(403),
            retry_after_secs: None,
        }),
    )
    .unwrap();
    let f = last_event(&p, "cred.blocked");
    assert_eq!(field(&f, "id"), "s1");
    assert_eq!(field(&f, "to"), "suspended");
    assert_eq!(field(&f, "reason"), "blocked");
    assert_eq!(field(&f, "http_status"), "403");
    // The card's 24 h, with jitter on top.
    let rest: u64 = field(&f, "cooldown")
        .strip_suffix('s')
        .unwrap()
        .parse()
        .unwrap();
    assert!((86_400..=2 * 86_400).contains(&rest), "{rest}");
}

const LIFECYCLE: &str = r#"{"lifecycle": {
    "default": {"method": "none", "can_relogin": false, "health_check_interval": 0},
    "sites": {"jd.com": {"method": "cookie-visit", "refresh_before_expire": 600, "jitter": 0,
                         "clock_skew": 0, "health_check_interval": 0, "can_relogin": true}}}}"#;

#[test]
fn a_session_about_to_expire_and_its_new_expiry_after_refresh_are_logged() {
    use crate::lifecycle::{Completed, RunOutcome};
    const H: Millis = 3_600_000;
    let mut p = Pool::load(
        FakeHost::new(T0),
        PolicyConfig::from_json(LIFECYCLE).unwrap(),
    )
    .unwrap();
    p.add(NewCredential {
        expires_at: Some(T0 + H),
        cookie_names: vec!["sid".into()],
        ..new("s1", Kind::Session)
    })
    .unwrap();
    p.tick().unwrap();
    assert!(p.host.refresh_requests.is_empty(), "not due yet");
    // 10 minutes before expiry the refresh starts: 600 s left.
    p.host.now = T0 + H - 600_000;
    p.tick().unwrap();
    let f = last_event(&p, "cred.expiring");
    assert_eq!(field(&f, "id"), "s1");
    assert_eq!(field(&f, "expires_in"), "600s");
    assert_eq!(field(&f, "method"), "cookie-visit");
    let r = p.host.refresh_requests[0].clone();
    let new_exp = T0 + 25 * H;
    p.refresh_completed(&Completed {
        request_id: r.request_id,
        credential_id: r.credential_id,
        outcome: RunOutcome::Refreshed(Some(new_exp)),
    })
    .unwrap();
    let f = last_event(&p, "refresh.result");
    assert_eq!(field(&f, "success"), "true");
    assert_eq!(
        field(&f, "new_expires"),
        crate::words::rfc3339_ms(new_exp).as_str()
    );
    assert_eq!(p.get("s1").unwrap().expires_at, Some(new_exp));
}
