//! Load shedding with the real binary: past `LATCH_MAX_CONCURRENT_REQUESTS` requests in progress,
//! one more is answered 503 with `Retry-After` at once; probes have slots of their own; a body
//! that never arrives is given up after the body deadline, and its slot comes back.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::process::{Latch, free_port};
use crate::support::{Backends, env_for, eventually};

/// A request that holds its slot: headers of a form POST whose body never comes (the handler
/// waits for it).
async fn stalled_request(base: &str) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /oauth/token HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.flush().await.unwrap();
    s
}

#[tokio::test]
async fn requests_past_the_limit_are_shed_with_retry_after() {
    let Some((mut env, _dir, _schema)) = env_for("shed", Backends::Embedded) else {
        return;
    };
    env.push(("LATCH_MAX_CONCURRENT_REQUESTS".into(), "2".into()));
    let mut latch = Latch::start(&env, free_port());
    latch.wait_ready().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let discovery = format!("{}/.well-known/openid-configuration", latch.base);
    assert_eq!(http.get(&discovery).send().await.unwrap().status(), 200);

    // Two stalled requests take both slots. Their bodies' deadline runs from when the instance
    // reads their heads; on a machine too busy to see the third request shed within it, the
    // stalled pair is opened again (the shedding itself is what is tested, not the timing).
    let mut attempt = 0;
    let (first, second, shed) = loop {
        attempt += 1;
        let first = stalled_request(&latch.base).await;
        let second = stalled_request(&latch.base).await;
        let window = std::time::Instant::now() + Duration::from_secs(8);
        let mut shed = None;
        while shed.is_none() && std::time::Instant::now() < window {
            let r = http.get(&discovery).send().await.unwrap();
            if r.status() == 503 {
                shed = Some(r);
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        match shed {
            Some(r) => break (first, second, r),
            None => assert!(attempt < 3, "the third request was never shed"),
        }
    };
    assert_eq!(
        shed.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // A shed answer still carries the headers every answer has.
    assert!(shed.headers().contains_key("x-content-type-options"));
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["statusCode"], 503);
    assert_eq!(body["errorCode"], "temporarily_unavailable");

    // Probes are answered whatever the load.
    for probe in ["/healthz", "/readyz"] {
        let r = http
            .get(format!("{}{probe}", latch.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe}");
    }

    // A body that never comes is given up after the body deadline: the stalled requests are
    // answered 400 and their slots serve the next requests.
    for mut stalled in [first, second] {
        let mut answer = Vec::new();
        tokio::time::timeout(
            latch_server::shed::BODY_DEADLINE + Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut stalled, &mut answer),
        )
        .await
        .expect("the stalled request is answered within the body deadline")
        .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    eventually("a slot is free again", async || {
        (http.get(&discovery).send().await.unwrap().status() == 200).then_some(())
    })
    .await;
}
