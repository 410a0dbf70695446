//! A minimal browser for in-process tests: a cookie jar, no redirects followed.

use std::collections::HashMap;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;

pub struct Browser {
    pub cookies: HashMap<String, String>,
    /// The socket address requests come from.
    pub peer: std::net::SocketAddr,
    /// Sent with every request (e.g. `X-Forwarded-For` through a proxy).
    pub extra_headers: Vec<(String, String)>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    pub headers: actix_web::http::header::HeaderMap,
}

impl Page {
    /// A query parameter of the redirect target.
    pub fn param(&self, name: &str) -> Option<String> {
        let loc = self.location.as_ref()?;
        let u = url::Url::parse(loc).ok()?;
        u.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The value of a hidden form field.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Browser {
    pub fn new() -> Self {
        Self::at("127.0.0.1:40000")
    }

    /// A browser whose requests come from `peer` (`host:port`).
    pub fn at(peer: &str) -> Self {
        Self {
            cookies: HashMap::new(),
            peer: peer.parse().expect("a socket address"),
            extra_headers: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish<B: actix_web::body::MessageBody>(&mut self, res: ServiceResponse<B>) -> Page {
        for c in res.response().cookies() {
            if c.value().is_empty() {
                self.cookies.remove(c.name());
            } else {
                self.cookies
                    .insert(c.name().to_owned(), c.value().to_owned());
            }
        }
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = String::from_utf8_lossy(&test::read_body(res).await).into_owned();
        Page {
            status,
            location,
            body,
            headers,
        }
    }

    pub async fn get<S, B>(&mut self, app: &S, uri: &str) -> Page
    where
        S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
        B: actix_web::body::MessageBody,
    {
        let mut req = test::TestRequest::get().uri(uri).peer_addr(self.peer);
        for (k, v) in &self.extra_headers {
            req = req.insert_header((k.as_str(), v.as_str()));
        }
        if !self.cookies.is_empty() {
            req = req.insert_header(("Cookie", self.cookie_header()));
        }
        let res = test::call_service(app, req.to_request()).await;
        self.finish(res).await
    }

    pub async fn post_form<S, B>(&mut self, app: &S, uri: &str, form: &[(&str, &str)]) -> Page
    where
        S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
        B: actix_web::body::MessageBody,
    {
        self.post_form_with(app, uri, form, None).await
    }

    pub async fn post_form_with<S, B>(
        &mut self,
        app: &S,
        uri: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Page
    where
        S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
        B: actix_web::body::MessageBody,
    {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let mut req = test::TestRequest::post()
            .uri(uri)
            .peer_addr(self.peer)
            .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
            .set_payload(body);
        for (k, v) in &self.extra_headers {
            req = req.insert_header((k.as_str(), v.as_str()));
        }
        if !self.cookies.is_empty() {
            req = req.insert_header(("Cookie", self.cookie_header()));
        }
        if let Some((id, secret)) = basic {
            use base64::Engine;
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let v = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(id),
                enc(secret)
            ));
            req = req.insert_header(("Authorization", format!("Basic {v}")));
        }
        let res = test::call_service(app, req.to_request()).await;
        self.finish(res).await
    }
}
