//! Single Logout pages. [`logout_page`] renders what `latch_core::logout::Logout::end` returns
//! for a browser: one hidden `<iframe>` per app with a front-channel logout URL (OpenID Connect
//! Front-Channel Logout 1.0) and one per SAML app with Single Logout, which carries that app's
//! signed LogoutRequest (HTTP-Redirect: the signed URL; HTTP-POST: a form the frame posts). The
//! page continues once they have loaded (or after 5 seconds) to the post-logout redirect, or to
//! a SAML initiator's LogoutResponse (a link, or a form it posts), with a link or button for
//! browsers without JavaScript. [`SloPages`] is the `latch_core::logout::FrontChannelPage` the
//! endpoint crates hold.
//!
//! **Invariant:** the page's Content-Security-Policy allows frames from exactly the origins of
//! its frames, forms to exactly the origins it posts to, and inline scripts only by a
//! per-response nonce; nothing else runs or loads.

use std::sync::Arc;

use askama::Template;
use latch_core::Clock;
use latch_core::logout::{
    Continue, FrontChannelPage, FrontChannelTarget, PageRequest, RenderedPage, SamlLogoutTarget,
    SamlSent,
};
use latch_saml::idp::{NameId, Outbound, logout_request_xml, new_id};
use latch_saml::keys::IdpKeys;
use url::Url;

/// How long the page waits for its frames before it continues anyway (the script's timer and
/// the `<meta http-equiv="refresh">` fallback).
pub const WAIT_SECONDS: u32 = 5;

/// A hidden frame: a URL to load, or a form (HTTP-POST binding) written into the frame.
struct Frame {
    src: Option<String>,
    srcdoc: Option<String>,
}

#[derive(Template)]
#[template(path = "slo/logout.html")]
struct LogoutTemplate<'a> {
    frames: &'a [Frame],
    /// The link onward (and the refresh target) when the page continues by GET.
    continue_to: Option<&'a str>,
    /// The form onward when the page continues by POST.
    post: Option<(&'a str, &'a [(String, String)])>,
    nonce: &'a str,
}

#[derive(Template)]
#[template(path = "slo/post-frame.html")]
struct PostFrame<'a> {
    action: &'a str,
    fields: &'a [(String, String)],
    nonce: &'a str,
}

/// The frame URL of one target: its front-channel URL with `iss` and, when set, `sid` appended
/// to the URL's own query (OpenID Connect Front-Channel Logout 1.0, §2).
pub fn frame_url(issuer: &str, target: &FrontChannelTarget) -> Url {
    let mut u = target.url.clone();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("iss", issuer);
        if let Some(sid) = &target.sid {
            q.append_pair("sid", sid.as_str());
        }
    }
    u
}

/// Signs what Latch sends SAML apps.
pub struct SamlSigner {
    pub keys: Arc<IdpKeys>,
    pub clock: Arc<dyn Clock>,
}

/// How long a LogoutRequest Latch sends is valid.
pub const LOGOUT_REQUEST_LIFETIME: time::Duration = time::Duration::minutes(5);

impl SamlSigner {
    /// The signed LogoutRequest for `t`, from Latch's IdP entity id `issuer`.
    pub fn logout_request(
        &self,
        issuer: &str,
        t: &SamlLogoutTarget,
    ) -> Result<(String, Outbound), latch_saml::SamlError> {
        let keys = self.keys.snapshot()?;
        let now = self.clock.now();
        let id = new_id();
        let name_id = NameId {
            value: t.participant.name_id.clone(),
            format: Some(t.participant.name_id_format.clone()),
            ..NameId::default()
        };
        let xml = logout_request_xml(
            &id,
            issuer,
            t.slo_url.as_str(),
            &name_id,
            Some(&t.participant.session_index),
            now,
            Some(now + LOGOUT_REQUEST_LIFETIME),
        );
        let out = Outbound::carry(&keys.signing, &t.binding, &t.slo_url, true, &xml, &id, None)?;
        Ok((id, out))
    }
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// The logout page for `p` (see [`FrontChannelPage::render`]). `None` when no frame is left:
/// the caller then answers as it would without the page.
pub fn logout_page(
    p: &PageRequest<'_>,
    signer: Option<&SamlSigner>,
) -> Result<Option<RenderedPage>, Box<dyn std::error::Error + Send + Sync>> {
    let nonce = latch_jose::random_token(18);
    let mut frames = Vec::new();
    let mut frame_origins = Vec::new();
    let mut form_origins = Vec::new();
    let mut framed = Vec::new();
    for t in p
        .front_channel
        .iter()
        .filter(|t| p.exclude != Some(&t.client_id))
    {
        let u = frame_url(p.issuer, t);
        push_unique(&mut frame_origins, u.origin().ascii_serialization());
        frames.push(Frame {
            src: Some(u.into()),
            srcdoc: None,
        });
        framed.push(t.client_id.clone());
    }
    let mut saml = Vec::new();
    for t in p.saml.iter().filter(|t| p.exclude != Some(&t.client_id)) {
        let Some(signer) = signer else {
            tracing::error!(client_id = %t.client_id, "no SAML signer: LogoutRequest not sent");
            continue;
        };
        let (request_id, out) = match signer.logout_request(p.issuer, t) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(client_id = %t.client_id, error = %e, "SAML LogoutRequest not made");
                continue;
            }
        };
        push_unique(&mut frame_origins, t.slo_url.origin().ascii_serialization());
        match out {
            Outbound::Redirect(u) => frames.push(Frame {
                src: Some(u.into()),
                srcdoc: None,
            }),
            Outbound::Post {
                action,
                field,
                value,
                relay_state,
            } => {
                push_unique(&mut form_origins, action.origin().ascii_serialization());
                let mut fields = vec![(field.to_owned(), value)];
                if let Some(rs) = relay_state {
                    fields.push(("RelayState".to_owned(), rs));
                }
                let doc = PostFrame {
                    action: action.as_str(),
                    fields: &fields,
                    nonce: &nonce,
                }
                .render()?;
                frames.push(Frame {
                    src: None,
                    srcdoc: Some(doc),
                });
            }
        }
        saml.push(SamlSent {
            client_id: t.client_id.clone(),
            request_id,
        });
    }
    if frames.is_empty() {
        return Ok(None);
    }
    if !saml.is_empty()
        && let Ok(issuer) = Url::parse(p.issuer)
    {
        // A SAML app answers its LogoutRequest inside the frame, with a LogoutResponse sent
        // back to Latch's SingleLogoutService: the frame navigates to Latch, also by the
        // redirect that follows a posted LogoutRequest (which `form-action` governs).
        let own = issuer.origin().ascii_serialization();
        push_unique(&mut frame_origins, own.clone());
        if !form_origins.is_empty() {
            push_unique(&mut form_origins, own);
        }
    }
    let (continue_to, post) = match &p.continue_to {
        None => (None, None),
        Some(Continue::Get(u)) => (Some(u.as_str()), None),
        Some(Continue::Post { action, fields }) => {
            push_unique(&mut form_origins, action.origin().ascii_serialization());
            (None, Some((action.as_str(), fields.as_slice())))
        }
    };
    let html = LogoutTemplate {
        frames: &frames,
        continue_to,
        post,
        nonce: &nonce,
    }
    .render()?;
    let script = if p.continue_to.is_some() || frames.iter().any(|f| f.srcdoc.is_some()) {
        format!("script-src 'nonce-{nonce}'; ")
    } else {
        String::new()
    };
    let form_action = if form_origins.is_empty() {
        "'none'".to_owned()
    } else {
        form_origins.join(" ")
    };
    let content_security_policy = format!(
        "default-src 'none'; frame-src {}; {script}style-src 'unsafe-inline'; img-src data:; form-action {form_action}; base-uri 'none'; frame-ancestors 'none'",
        frame_origins.join(" ")
    );
    Ok(Some(RenderedPage {
        html,
        content_security_policy,
        framed,
        saml,
    }))
}

/// The `FrontChannelPage` port over [`logout_page`]; a page that fails to render is logged and
/// left out (the caller then answers without it: the back-channel deliveries still go out).
#[derive(Default)]
pub struct SloPages {
    /// Signs LogoutRequests to SAML apps; without it they are left out (logged).
    pub signer: Option<SamlSigner>,
}

impl SloPages {
    pub fn new(signer: SamlSigner) -> Self {
        Self {
            signer: Some(signer),
        }
    }
}

impl FrontChannelPage for SloPages {
    fn render(&self, p: &PageRequest<'_>) -> Option<RenderedPage> {
        match logout_page(p, self.signer.as_ref()) {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "logout page failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latch_core::{ClientId, Sid};

    type Page = Result<Option<RenderedPage>, Box<dyn std::error::Error + Send + Sync>>;

    fn logout_page(
        issuer: &str,
        targets: &[FrontChannelTarget],
        exclude: Option<&ClientId>,
        continue_to: Option<&str>,
    ) -> Page {
        super::logout_page(
            &PageRequest {
                issuer,
                front_channel: targets,
                saml: &[],
                exclude,
                continue_to: continue_to.map(|c| Continue::Get(c.to_owned())),
            },
            None,
        )
    }

    fn target(id: &str, url: &str, sid: Option<&str>) -> FrontChannelTarget {
        FrontChannelTarget {
            client_id: ClientId::new(id),
            url: Url::parse(url).expect("url"),
            sid: sid.map(Sid::new),
        }
    }

    #[test]
    fn frames_every_target_but_the_initiator_with_iss_and_sid() {
        let targets = [
            target("a", "https://a.example/fc", Some("sid-a")),
            target("b", "https://b.example:8443/fc?x=1&y=%20", Some("sid b")),
            target("c", "https://b.example:8443/other", None),
        ];
        let page = logout_page(
            "https://latch.example",
            &targets,
            Some(&ClientId::new("a")),
            Some("https://a.example/bye?state=s&x=1"),
        )
        .expect("renders")
        .expect("frames left");
        assert_eq!(page.framed, [ClientId::new("b"), ClientId::new("c")]);
        assert!(!page.html.contains("a.example/fc"), "{}", page.html);
        assert!(page.html.contains(
            "src=\"https://b.example:8443/fc?x=1&#38;y=%20&#38;iss=https%3A%2F%2Flatch.example&#38;sid=sid+b\""
        ), "{}", page.html);
        assert!(
            page.html
                .contains("src=\"https://b.example:8443/other?iss=https%3A%2F%2Flatch.example\""),
            "{}",
            page.html
        );
        assert!(
            page.html.contains(
                "<meta http-equiv=\"refresh\" content=\"5;url=https://a.example/bye?state=s&#38;x=1\">"
            ),
            "{}",
            page.html
        );
        assert!(
            page.html
                .contains("id=\"continue\" href=\"https://a.example/bye?state=s&#38;x=1\"")
        );
        let csp = &page.content_security_policy;
        assert!(
            csp.starts_with(
                "default-src 'none'; frame-src https://b.example:8443; script-src 'nonce-"
            ),
            "{csp}"
        );
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .expect("nonce");
        assert!(nonce.len() >= 22);
        assert!(page.html.contains(&format!("<script nonce=\"{nonce}\">")));
        assert!(csp.ends_with("form-action 'none'; base-uri 'none'; frame-ancestors 'none'"));
    }

    #[test]
    fn without_a_continuation_it_says_signed_out_and_runs_no_script() {
        let targets = [target("b", "http://127.0.0.1:9/fc", Some("s"))];
        let page = logout_page("http://127.0.0.1:8080", &targets, None, None)
            .expect("renders")
            .expect("a frame");
        assert!(page.html.contains("You are signed out."));
        assert!(!page.html.contains("<script"));
        assert!(!page.html.contains("http-equiv=\"refresh\""));
        assert!(!page.content_security_policy.contains("script-src"));
        assert!(
            page.content_security_policy
                .contains("frame-src http://127.0.0.1:9;")
        );
    }

    #[test]
    fn no_page_without_frames() {
        let targets = [target("a", "https://a.example/fc", None)];
        let none = logout_page(
            "https://latch.example",
            &targets,
            Some(&ClientId::new("a")),
            None,
        )
        .expect("renders");
        assert!(none.is_none());
        assert!(
            SloPages::default()
                .render(&PageRequest {
                    issuer: "https://latch.example",
                    front_channel: &[],
                    saml: &[],
                    exclude: None,
                    continue_to: None,
                })
                .is_none()
        );
    }

    #[test]
    fn nonces_differ_per_page() {
        let targets = [target("b", "https://b.example/fc", None)];
        let csp = || {
            logout_page(
                "https://l.example",
                &targets,
                None,
                Some("https://x.example/"),
            )
            .expect("renders")
            .expect("a frame")
            .content_security_policy
        };
        assert_ne!(csp(), csp());
    }
}
