//! Security headers on every response, and the request id echoed back to callers.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use tracing_actix_web::RequestId;

/// Headers every Latch response carries. HTML pages may set a richer CSP of their own; a
/// header a handler already set is left as it is. `https` (the issuer is an https URL) adds
/// `Strict-Transport-Security` (a year; not `includeSubDomains`, which would bind sibling hosts
/// Latch does not own).
pub fn security_headers(https: bool) -> DefaultHeaders {
    let headers = if https {
        DefaultHeaders::new().add(("Strict-Transport-Security", "max-age=31536000"))
    } else {
        DefaultHeaders::new()
    };
    headers
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
}

/// Copies the request id that `tracing_actix_web::TracingLogger` assigned into an
/// `X-Request-Id` response header, so a caller can quote it.
pub async fn request_id_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req.extensions().get::<RequestId>().map(|r| r.to_string());
    let mut res = next.call(req).await?;
    if let Some(id) = id.and_then(|i| HeaderValue::from_str(&i).ok()) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), id);
    }
    Ok(res)
}

/// Behind a trusted proxy, with an `https://` issuer: a request the proxy says came over plain
/// HTTP (`X-Forwarded-Proto: http`) is not served. A `GET` or `HEAD` is redirected (308) to the
/// same path and query on the issuer's origin; anything else is refused (403) before it is
/// read, so no credential sent in the clear is acted on. `origin` is the issuer's scheme, host
/// and port; `None` (an `http://` issuer) turns the check off.
pub async fn require_https(
    origin: Option<std::sync::Arc<str>>,
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::HttpResponse;
    use actix_web::http::Method;
    let Some(origin) = origin else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let res = match crate::client_ip::forwarded_scheme(req.request()) {
        // Not from a trusted proxy, or the proxy's own request: as it is.
        None | Some(Some("https")) => return Ok(next.call(req).await?.map_into_boxed_body()),
        Some(Some(_)) if matches!(*req.method(), Method::GET | Method::HEAD) => {
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", actix_web::http::uri::PathAndQuery::as_str);
            HttpResponse::PermanentRedirect()
                .insert_header((
                    actix_web::http::header::LOCATION,
                    format!("{origin}{target}"),
                ))
                .finish()
        }
        Some(Some(_)) => HttpResponse::Forbidden().json(serde_json::json!({
            "statusCode": 403, "error": "Forbidden", "errorCode": "https_required",
            "message": "This server is served over https only.",
        })),
        Some(None) => HttpResponse::BadRequest().json(serde_json::json!({
            "statusCode": 400, "error": "Bad Request", "errorCode": "invalid_request",
            "message": "The forwarded scheme is neither http nor https.",
        })),
    };
    Ok(req.into_response(res))
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, test, web};

    use crate::TrustedProxies;

    async fn call(
        origin: Option<&str>,
        peer: &str,
        method: actix_web::http::Method,
        headers: &[(&str, &str)],
    ) -> actix_web::dev::ServiceResponse {
        let origin: Option<std::sync::Arc<str>> = origin.map(Into::into);
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(TrustedProxies::parse("10.0.0.0/8").unwrap()))
                .wrap(from_fn(move |req, next| {
                    super::require_https(origin.clone(), req, next)
                }))
                .default_service(web::to(|| async { HttpResponse::Ok().body("served") })),
        )
        .await;
        let mut req = test::TestRequest::default()
            .method(method)
            .uri("/authorize?client_id=a&state=b")
            .peer_addr(format!("{peer}:40000").parse().unwrap());
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        test::call_service(&app, req.to_request()).await
    }

    #[actix_web::test]
    async fn plain_http_from_the_proxy_is_redirected_or_refused() {
        use actix_web::http::Method;
        let https = Some("https://id.example.com");
        // The proxy says https, or says nothing (its own probe): served.
        for h in [
            &[("X-Forwarded-Proto", "https")][..],
            &[],
            &[("Forwarded", "for=1.2.3.4;proto=https")],
        ] {
            assert_eq!(
                call(https, "10.0.0.5", Method::GET, h).await.status(),
                200,
                "{h:?}"
            );
        }
        // The proxy says http: a GET goes to the same path and query over https.
        let r = call(
            https,
            "10.0.0.5",
            Method::GET,
            &[("X-Forwarded-Proto", "http")],
        )
        .await;
        assert_eq!(r.status(), 308);
        assert_eq!(
            r.headers().get("location").unwrap(),
            "https://id.example.com/authorize?client_id=a&state=b"
        );
        // The nearest proxy's value counts (the last one).
        let r = call(
            https,
            "10.0.0.5",
            Method::GET,
            &[("X-Forwarded-Proto", "https, http")],
        )
        .await;
        assert_eq!(r.status(), 308);
        // A POST in the clear is refused, not acted on.
        let r = call(
            https,
            "10.0.0.5",
            Method::POST,
            &[("X-Forwarded-Proto", "http")],
        )
        .await;
        assert_eq!(r.status(), 403);
        let r = call(
            https,
            "10.0.0.5",
            Method::POST,
            &[("Forwarded", "proto=http")],
        )
        .await;
        assert_eq!(r.status(), 403);
        let r = call(
            https,
            "10.0.0.5",
            Method::GET,
            &[("X-Forwarded-Proto", "gopher")],
        )
        .await;
        assert_eq!(r.status(), 400);
        // From anyone else the header is not believed, and a direct request is served.
        let r = call(
            https,
            "203.0.113.9",
            Method::POST,
            &[("X-Forwarded-Proto", "http")],
        )
        .await;
        assert_eq!(r.status(), 200);
        // An http issuer (development): no check.
        let r = call(
            None,
            "10.0.0.5",
            Method::POST,
            &[("X-Forwarded-Proto", "http")],
        )
        .await;
        assert_eq!(r.status(), 200);
    }
}
