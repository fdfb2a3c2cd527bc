//! Captchas in a form login: what the solver program is given (the image,
//! as the recipe locates it, base64; its URL; the kind; a click captcha's
//! instruction), what it may answer (a text, a gap distance, points), and
//! what is posted (the text, a human-like drag track for a slider, the
//! points as JSON). The same conversion serves a person's answer to a
//! captcha ticket.
//!
//! The image is no secret, but it stays out of logs: only its size is
//! logged.

use super::Inner;
use super::cookies::Jar;
use super::sites::{ChallengeRule, SiteConfig, TrackFormat};
use crate::backend::Write;
use crate::bindings::refresh::ChallengeKind;
use crate::vault::{Vault, VaultError};
use base64::Engine as _;
use zeroize::Zeroizing;

/// The longest instruction passed on (characters).
const MAX_INSTRUCTION: usize = 500;
/// Points a click captcha answer may have.
const MAX_POINTS: usize = 20;

/// A captcha's answer, by kind. Its Debug hides a text (a code or a
/// captcha's answer is a secret).
#[derive(PartialEq)]
pub(crate) enum Solution {
    /// An image captcha's text, or any other challenge's code.
    Text(Zeroizing<String>),
    /// A slider's gap distance in pixels.
    Distance(f64),
    /// A click captcha's points, in image pixels, in order.
    Points(Vec<(f64, f64)>),
}

impl std::fmt::Debug for Solution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Solution::Text(_) => f.write_str("Text(***)"),
            Solution::Distance(d) => f.debug_tuple("Distance").field(d).finish(),
            Solution::Points(p) => f.debug_tuple("Points").field(p).finish(),
        }
    }
}

/// The page that showed the challenge: its URL and body.
pub(crate) struct Page {
    pub url: reqwest::Url,
    pub body: String,
}

/// Reads an answer (the solver's stdout or a person's) for `kind`: plain
/// text; for a slider a number; for a click captcha `x,y;x,y` or
/// `[[x,y],…]`; or a JSON object `{"text"}`, `{"distance"}`, `{"points"}`.
/// `None` when it does not fit the kind.
pub(crate) fn parse(kind: ChallengeKind, answer: &str) -> Option<Solution> {
    let a = answer.trim();
    if a.is_empty() {
        return None;
    }
    // A code or a security answer is taken as it is; a captcha's may be
    // a JSON object.
    let is_captcha = matches!(
        kind,
        ChallengeKind::CaptchaImage | ChallengeKind::CaptchaSlider | ChallengeKind::CaptchaClick
    );
    let object = (is_captcha && a.starts_with('{'))
        .then(|| serde_json::from_str::<serde_json::Value>(a).ok())
        .flatten();
    match kind {
        ChallengeKind::CaptchaSlider => {
            let d = match &object {
                Some(o) => o.get("distance")?.as_f64()?,
                None => a.parse::<f64>().ok()?,
            };
            (d.is_finite() && d > 0.0 && d <= super::slider::MAX_DISTANCE)
                .then_some(Solution::Distance(d))
        }
        ChallengeKind::CaptchaClick => {
            let points = match &object {
                Some(o) => json_points(o.get("points")?)?,
                None if a.starts_with('[') => {
                    json_points(&serde_json::from_str::<serde_json::Value>(a).ok()?)?
                }
                None => a
                    .split(';')
                    .map(|p| {
                        let (x, y) = p.split_once(',')?;
                        Some((x.trim().parse().ok()?, y.trim().parse().ok()?))
                    })
                    .collect::<Option<Vec<(f64, f64)>>>()?,
            };
            let fine = !points.is_empty()
                && points.len() <= MAX_POINTS
                && points
                    .iter()
                    .all(|(x, y)| x.is_finite() && y.is_finite() && *x >= 0.0 && *y >= 0.0);
            fine.then_some(Solution::Points(points))
        }
        _ => {
            let text = match &object {
                Some(o) => o.get("text")?.as_str()?.trim().to_string(),
                None => a.to_string(),
            };
            (!text.is_empty()).then(|| Solution::Text(Zeroizing::new(text)))
        }
    }
}

fn json_points(v: &serde_json::Value) -> Option<Vec<(f64, f64)>> {
    v.as_array()?
        .iter()
        .map(|p| match p {
            serde_json::Value::Array(xy) if xy.len() == 2 => {
                Some((xy[0].as_f64()?, xy[1].as_f64()?))
            }
            serde_json::Value::Object(o) => Some((o.get("x")?.as_f64()?, o.get("y")?.as_f64()?)),
            _ => None,
        })
        .collect()
}

/// The form fields that carry `solution` to `rule.submit_url`; a slider's
/// track is drawn from `seed`.
pub(crate) fn fields(
    rule: &ChallengeRule,
    solution: &Solution,
    seed: u64,
) -> Vec<(String, Zeroizing<String>)> {
    match solution {
        Solution::Text(t) => vec![(rule.field.clone(), t.clone())],
        Solution::Distance(d) => {
            let track = super::slider::generate(*d, seed);
            let json = match rule.track_format {
                TrackFormat::Rows => super::slider::to_json(&track),
                TrackFormat::Objects => serde_json::to_string(&track).expect("integers serialise"),
            };
            let mut out = vec![(rule.field.clone(), Zeroizing::new(json))];
            if let Some(f) = &rule.distance_field {
                out.push((f.clone(), Zeroizing::new(format!("{}", d.round() as i64))));
            }
            out
        }
        Solution::Points(p) => {
            let rows: Vec<[f64; 2]> = p.iter().map(|&(x, y)| [x, y]).collect();
            let json = serde_json::to_string(&rows).expect("numbers serialise");
            vec![(rule.field.clone(), Zeroizing::new(json))]
        }
    }
}

/// The first `src="…"` (or `src='…'`) after `marker` in `body`.
fn src_after<'a>(body: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &body[body.find(marker)? + marker.len()..];
    let at = rest.find("src=")? + 4;
    let rest = &rest[at..];
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    Some(&rest[..rest.find(quote)?])
}

/// The text after `after` up to `until`, tags left out, trimmed.
fn instruction(body: &str, after: &str, until: &str) -> Option<String> {
    let rest = &body[body.find(after)? + after.len()..];
    let end = if until.is_empty() {
        rest.len()
    } else {
        rest.find(until).unwrap_or(rest.len())
    };
    let mut text = String::new();
    let mut in_tag = false;
    for c in rest[..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text: String = text.trim().chars().take(MAX_INSTRUCTION).collect();
    (!text.is_empty()).then_some(text)
}

/// Where the image is: a URL to fetch, or the bytes of a `data:` URI.
enum ImageAt {
    Url(reqwest::Url),
    Inline { bytes: Vec<u8>, mime: String },
}

fn locate(rule: &ChallengeRule, page: Option<&Page>) -> Option<ImageAt> {
    let raw = match (&rule.image_url, &rule.image_after) {
        (Some(u), _) => u.as_str(),
        (None, Some(marker)) => src_after(&page?.body, marker)?,
        (None, None) => return None,
    };
    let raw = raw.replace("&amp;", "&");
    if let Some(data) = raw.strip_prefix("data:") {
        let (head, b64) = data.split_once(',')?;
        let mime = head.strip_suffix(";base64")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        return Some(ImageAt::Inline {
            bytes,
            mime: mime.to_string(),
        });
    }
    let url = match page {
        Some(p) => p.url.join(&raw).ok()?,
        None => reqwest::Url::parse(&raw).ok()?,
    };
    matches!(url.scheme(), "http" | "https").then_some(ImageAt::Url(url))
}

/// A captcha image as the site served it.
pub(crate) struct Image {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    /// Where it was fetched from (none for a `data:` URI).
    pub url: Option<reqwest::Url>,
}

/// The captcha image the recipe locates, fetched with the login's cookies
/// (once per challenge page: a site may draw a new one on every fetch).
/// `who`: the site's name and the credential's id.
pub(crate) async fn fetch_image(
    inner: &Inner,
    site: &SiteConfig,
    (site_name, id): (&str, &str),
    rule: &ChallengeRule,
    page: Option<&Page>,
    jar: &mut Jar,
) -> Option<Image> {
    match locate(rule, page)? {
        ImageAt::Inline { bytes, mime } => Some(Image {
            bytes,
            media_type: Some(mime),
            url: None,
        }),
        ImageAt::Url(url) => match super::relogin::get(inner, site, &url, jar).await {
            Some(f) if f.status < 400 && !f.bytes.is_empty() => Some(Image {
                bytes: f.bytes,
                media_type: f.content_type,
                url: Some(url),
            }),
            _ => {
                tracing::warn!(
                    target: "credpool::refresh",
                    "[CRED] captcha image not fetched credential={id} site={site_name}"
                );
                None
            }
        },
    }
}

/// What the solver program reads on stdin: the site, the credential, the
/// kind, and (when the recipe locates them) the image and the instruction.
/// `who`: the site's name and the credential's id.
pub(crate) fn solver_input(
    (site_name, id): (&str, &str),
    kind: ChallengeKind,
    rule: &ChallengeRule,
    page: Option<&Page>,
    image: Option<&Image>,
) -> serde_json::Value {
    let mut input = serde_json::json!({
        "site": site_name,
        "credential_id": id,
        "kind": crate::names::challenge_kind(kind),
    });
    if let Some(image) = image {
        tracing::info!(
            target: "credpool::refresh",
            "[CRED] captcha for the solver credential={id} site={site_name} kind={} image_bytes={}",
            crate::names::challenge_kind(kind),
            image.bytes.len()
        );
        input["image_base64"] = base64::engine::general_purpose::STANDARD
            .encode(&image.bytes)
            .into();
        if let Some(m) = &image.media_type {
            input["image_type"] = m.as_str().into();
        }
        if let Some(u) = &image.url {
            input["image_url"] = u.as_str().into();
        }
    }
    if let (Some(after), Some(p)) = (&rule.instruction_after, page)
        && let Some(text) = instruction(
            &p.body,
            after,
            rule.instruction_until.as_deref().unwrap_or("<"),
        )
    {
        input["instruction"] = text.into();
    }
    input
}

/// The largest image kept for a ticket (bytes): a captcha is small; a
/// page that serves more is not stored whole in the pool.
pub const MAX_KEPT_IMAGE: usize = 512 * 1024;

/// What a stopped login met, kept for the person who answers its ticket:
/// the captcha image as the site served it, the question the page asked.
/// Not a secret (the answer is), but sealed like every stored value.
#[derive(Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChallengeContext {
    pub media_type: Option<String>,
    #[serde(with = "base64_bytes", default)]
    pub image: Option<Vec<u8>>,
    pub question: Option<String>,
}

impl std::fmt::Debug for ChallengeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChallengeContext")
            .field("media_type", &self.media_type)
            .field("image_bytes", &self.image.as_ref().map(Vec::len))
            .field("question", &self.question)
            .finish()
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

/// The question the challenge page asks (the recipe's `instruction_after`).
pub(crate) fn question(rule: &ChallengeRule, page: Option<&Page>) -> Option<String> {
    instruction(
        &page?.body,
        rule.instruction_after.as_deref()?,
        rule.instruction_until.as_deref().unwrap_or("<"),
    )
}

/// Keeps what credential `id`'s stopped login met, sealed with the
/// tenant's key (see [`crate::layout::captcha_key`]), for the person who
/// answers its ticket. Failing to keep it only costs the picture.
pub(crate) fn keep_context(
    vault: &Vault,
    id: &str,
    image: Option<&Image>,
    question: Option<String>,
) {
    let image = image.filter(|i| {
        let fits = i.bytes.len() <= MAX_KEPT_IMAGE;
        if !fits {
            tracing::warn!(
                target: "credpool::refresh",
                "[CRED] captcha image not kept credential={id}: {} bytes, more than {MAX_KEPT_IMAGE}",
                i.bytes.len()
            );
        }
        fits
    });
    if image.is_none() && question.is_none() {
        return;
    }
    let context = ChallengeContext {
        media_type: image.and_then(|i| i.media_type.clone()),
        image: image.map(|i| i.bytes.clone()),
        question,
    };
    let key = crate::layout::captcha_key(vault.tenant(), id);
    let value = serde_json::to_vec(&context).expect("strings and bytes serialise");
    let kept = vault
        .seal(&key, &value)
        .and_then(|sealed| Ok(vault.backend().apply(&[Write::Put(key, sealed)])?));
    if let Err(e) = kept {
        tracing::warn!(target: "credpool::refresh", "[CRED] challenge context not kept credential={id}: {e}");
    }
}

/// What credential `id`'s stopped login met, if it was kept.
pub(crate) fn kept_context(
    vault: &Vault,
    id: &str,
) -> Result<Option<ChallengeContext>, VaultError> {
    let key = crate::layout::captcha_key(vault.tenant(), id);
    let Some(value) = vault.get(&key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&value)
        .map(Some)
        .map_err(|_| VaultError::Format { key })
}

/// Drops what was kept for credential `id`'s stopped login (its ticket
/// closed).
pub(crate) fn drop_context(vault: &Vault, id: &str) {
    let key = crate::layout::captcha_key(vault.tenant(), id);
    if let Err(e) = vault.backend().apply(&[Write::Delete(key)]) {
        tracing::warn!(target: "credpool::refresh", "[CRED] challenge context of credential={id} not deleted: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ChallengeRule {
        toml::from_str(
            r#"kind = "captcha-slider"
submit_url = "https://a.example/captcha"
field = "track"
distance_field = "d""#,
        )
        .unwrap()
    }

    #[test]
    fn answers_are_read_by_kind() {
        use ChallengeKind::*;
        assert_eq!(
            parse(CaptchaSlider, " 123.5\n"),
            Some(Solution::Distance(123.5))
        );
        assert_eq!(
            parse(CaptchaSlider, r#"{"distance": 80}"#),
            Some(Solution::Distance(80.0))
        );
        assert_eq!(parse(CaptchaSlider, "abc"), None);
        assert_eq!(parse(CaptchaSlider, "-4"), None);
        assert_eq!(
            parse(CaptchaClick, "10,20; 30.5,40"),
            Some(Solution::Points(vec![(10.0, 20.0), (30.5, 40.0)]))
        );
        assert_eq!(
            parse(CaptchaClick, r#"{"points": [[1,2],{"x":3,"y":4}]}"#),
            Some(Solution::Points(vec![(1.0, 2.0), (3.0, 4.0)]))
        );
        assert_eq!(parse(CaptchaClick, "here"), None);
        assert_eq!(
            parse(CaptchaImage, r#"{"text": "K7P2Q"}"#),
            Some(Solution::Text(Zeroizing::new("K7P2Q".into())))
        );
        assert_eq!(
            parse(CaptchaImage, "K7P2Q\n"),
            Some(Solution::Text(Zeroizing::new("K7P2Q".into())))
        );
        assert_eq!(parse(SmsCode, "  "), None);
        assert_eq!(
            parse(SecurityQuestion, r#"{"a": 1}"#),
            Some(Solution::Text(Zeroizing::new(r#"{"a": 1}"#.into())))
        );
    }

    #[test]
    fn a_slider_answer_is_posted_as_a_track_and_the_distance() {
        let f = fields(&rule(), &Solution::Distance(101.6), 3);
        assert_eq!(f[0].0, "track");
        let track: Vec<[i64; 3]> = serde_json::from_str(&f[0].1).unwrap();
        assert_eq!(track.last().unwrap()[0], 102);
        assert_eq!((f[1].0.as_str(), f[1].1.as_str()), ("d", "102"));
        let mut r = rule();
        r.track_format = TrackFormat::Objects;
        let f = fields(&r, &Solution::Distance(101.6), 3);
        let track: Vec<serde_json::Value> = serde_json::from_str(&f[0].1).unwrap();
        assert_eq!(track[0], serde_json::json!({"x": 0, "y": 0, "t": 0}));
        assert_eq!(track.last().unwrap()["x"], 102);
    }

    #[test]
    fn the_image_and_instruction_are_found_in_the_page() {
        let body = r#"<p class="hint">Click the <b>cat</b></p><img id="bg" src="/img?a=1&amp;b=2"><img src='x.png'>"#;
        assert_eq!(src_after(body, r#"id="bg""#), Some("/img?a=1&amp;b=2"));
        assert_eq!(src_after(body, "</p>"), Some("/img?a=1&amp;b=2"));
        assert_eq!(
            instruction(body, r#"<p class="hint">"#, "</p>").as_deref(),
            Some("Click the cat")
        );
        assert_eq!(
            instruction(body, r#"<p class="hint">"#, "<").as_deref(),
            Some("Click the")
        );
        let mut r = rule();
        r.image_after = Some(r#"id="bg""#.into());
        let page = Page {
            url: reqwest::Url::parse("https://a.example/login/step").unwrap(),
            body: body.into(),
        };
        match locate(&r, Some(&page)) {
            Some(ImageAt::Url(u)) => assert_eq!(u.as_str(), "https://a.example/img?a=1&b=2"),
            _ => panic!("a URL"),
        }
        let page = Page {
            url: page.url,
            body: r#"<img id="bg" src="data:image/png;base64,iVBORw==">"#.into(),
        };
        match locate(&r, Some(&page)) {
            Some(ImageAt::Inline { bytes, mime }) => {
                assert_eq!(
                    (bytes.as_slice(), mime.as_str()),
                    (&b"\x89PNG"[..], "image/png")
                )
            }
            _ => panic!("inline bytes"),
        }
    }
}
