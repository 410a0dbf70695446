//! Single Logout pages. [`logout_page`] renders what `latch_core::logout::Logout::end` returns
//! for a browser: OpenID Connect Front-Channel Logout 1.0's page, one hidden `<iframe>` per app
//! with a front-channel logout URL, that continues to the post-logout redirect once they have
//! loaded (or after 5 seconds), with a link for browsers without JavaScript. [`SloPages`] is the
//! `latch_core::logout::FrontChannelPage` the endpoint crates hold.
//!
//! **Invariant:** the page's Content-Security-Policy allows frames from exactly the origins of
//! its frames and the one inline script by a per-response nonce; nothing else runs or loads.

use askama::Template;
use latch_core::ClientId;
use latch_core::logout::{FrontChannelPage, FrontChannelTarget, RenderedPage};
use url::Url;

/// How long the page waits for its frames before it continues anyway (the script's timer and
/// the `<meta http-equiv="refresh">` fallback).
pub const WAIT_SECONDS: u32 = 5;

#[derive(Template)]
#[template(path = "slo/logout.html")]
struct LogoutTemplate<'a> {
    frames: &'a [String],
    continue_to: Option<&'a str>,
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

/// The logout page for `targets` but `exclude`'s (the app that initiated the logout is sent
/// on, not framed), continuing to `continue_to` or, without one, saying the user is signed out.
/// `None` when no frame is left: the caller then answers as it would without the page.
pub fn logout_page(
    issuer: &str,
    targets: &[FrontChannelTarget],
    exclude: Option<&ClientId>,
    continue_to: Option<&str>,
) -> Result<Option<RenderedPage>, askama::Error> {
    let framed: Vec<&FrontChannelTarget> = targets
        .iter()
        .filter(|t| exclude != Some(&t.client_id))
        .collect();
    if framed.is_empty() {
        return Ok(None);
    }
    let frames: Vec<Url> = framed.iter().map(|t| frame_url(issuer, t)).collect();
    let mut origins: Vec<String> = Vec::new();
    for f in &frames {
        let o = f.origin().ascii_serialization();
        if !origins.contains(&o) {
            origins.push(o);
        }
    }
    let nonce = latch_jose::random_token(18);
    let srcs: Vec<String> = frames.iter().map(|u| u.as_str().to_owned()).collect();
    let html = LogoutTemplate {
        frames: &srcs,
        continue_to,
        nonce: &nonce,
    }
    .render()?;
    let script = if continue_to.is_some() {
        format!("script-src 'nonce-{nonce}'; ")
    } else {
        String::new()
    };
    let content_security_policy = format!(
        "default-src 'none'; frame-src {}; {script}style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        origins.join(" ")
    );
    Ok(Some(RenderedPage {
        html,
        content_security_policy,
        framed: framed.iter().map(|t| t.client_id.clone()).collect(),
    }))
}

/// The `FrontChannelPage` port over [`logout_page`]; a page that fails to render is logged and
/// left out (the caller then answers without it: the back-channel deliveries still go out).
#[derive(Debug, Clone, Copy, Default)]
pub struct SloPages;

impl FrontChannelPage for SloPages {
    fn render(
        &self,
        issuer: &str,
        targets: &[FrontChannelTarget],
        exclude: Option<&ClientId>,
        continue_to: Option<&str>,
    ) -> Option<RenderedPage> {
        match logout_page(issuer, targets, exclude, continue_to) {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "front-channel logout page failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latch_core::Sid;

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
            SloPages
                .render("https://latch.example", &[], None, None)
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
