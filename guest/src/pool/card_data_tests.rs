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
    let s = p.get("s1").unwrap();
    assert_eq!(s.local_storage_names, vec!["auth_state".to_string()]);
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
